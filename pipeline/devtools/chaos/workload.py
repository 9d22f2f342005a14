"""A chaos run's input: sample calls from a seed, as records, published with their offsets."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaProducer

from pipeline.devtools.samples import SampleTenant, sample_calls
from pipeline.streams.producing import record_for_call

__all__ = ["Located", "Workload", "publish_located", "workload"]

Located = tuple[int, int]  # (partition, offset) of a record on the call topic


@dataclass(frozen=True)
class Item:
    """One record to publish; `event` is set for a valid call event, None for a hostile one."""

    key: bytes | None
    value: bytes | None
    timestamp: int | None
    event: dict[str, Any] | None = None
    kind: str = "valid"  # for a hostile record: what is wrong with it


@dataclass(frozen=True)
class Workload:
    items: list[Item]

    @property
    def events(self) -> list[dict[str, Any]]:
        return [i.event for i in self.items if i.event is not None]

    @property
    def hostile(self) -> int:
        return sum(1 for i in self.items if i.event is None)


def workload(tenants: Sequence[SampleTenant], count: int, *, seed: int,
             end: datetime | None = None) -> Workload:
    """`count` calls over the tenants, deterministic from `seed` (and `end`, default now): new
    and repeat callers (30 %), answered and missed, in and out, employees mapped, unmapped and
    absent, over the 5 hours before `end`."""
    events = sample_calls(list(tenants), count, seed=seed, span=timedelta(hours=5), end=end)
    return Workload([valid_item(e) for e in events])


def valid_item(event: dict[str, Any]) -> Item:
    key, value, timestamp = record_for_call(json.dumps(event).encode())
    return Item(key, value, timestamp, event)


async def publish_located(bootstrap: str, topic: str, items: Sequence[Item], *,
                          partition: Callable[[bytes | None], int] | None = None
                          ) -> list[Located]:
    """Publish in order (idempotent producer: per partition, the order given) and return where
    each record landed: on the partition `partition` picks from the key, where given (another
    producer's partitioner), else on murmur2's."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True,
                                linger_ms=5, request_timeout_ms=60_000)
    await producer.start()
    try:
        futures = [await producer.send(topic, i.value, key=i.key, timestamp_ms=i.timestamp,
                                       partition=partition(i.key) if partition else None)
                   for i in items]
        located = []
        for future in futures:
            meta = await future
            located.append((int(meta.partition), int(meta.offset)))
        return located
    finally:
        await producer.stop()
