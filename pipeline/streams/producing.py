"""Publishing to callsync's topics: call events keyed by tenant, tenant configs and mappings."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaProducer

__all__ = ["Record", "publish", "record_for_call", "tenant_key_of"]

Record = tuple[bytes | None, bytes | None, int | None]  # key, value, timestamp in ms


def tenant_key_of(raw: bytes) -> bytes | None:
    """The record key for a call line: its tenant_id, or None if the line has none."""
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    tenant = data.get("tenant_id") if isinstance(data, dict) else None
    return tenant.encode() if isinstance(tenant, str) and tenant else None


def record_for_call(raw: bytes) -> Record:
    """Keyed by tenant and stamped with the call's start, so replay can find it by time."""
    timestamp = None
    try:
        started = json.loads(raw).get("started_at")
        timestamp = int(datetime.fromisoformat(started).timestamp() * 1000)
    except (ValueError, TypeError, AttributeError):
        pass
    return tenant_key_of(raw), raw, timestamp


async def publish(brokers: str | Mapping[str, Any], topic: str,
                  records: Iterable[Record]) -> int:
    """`brokers`: bootstrap servers, or KafkaSettings.client_options() (TLS, SASL)."""
    options = {"bootstrap_servers": brokers} if isinstance(brokers, str) else dict(brokers)
    producer = AIOKafkaProducer(**options, enable_idempotence=True, linger_ms=5)
    await producer.start()
    sent = 0
    try:
        batch = []
        for key, value, timestamp in records:
            batch.append(await producer.send(topic, value, key=key, timestamp_ms=timestamp))
            sent += 1
        for future in batch:
            await future
    finally:
        await producer.stop()
    return sent
