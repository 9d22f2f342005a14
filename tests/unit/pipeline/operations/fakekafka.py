"""The calls topic in memory, and a consumer over it with the part of aiokafka's API replay uses."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiokafka import TopicPartition

__all__ = ["CallLog", "FakeConsumer", "call_json"]

TOPIC = "calls"


@dataclass(frozen=True)
class Message:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int  # ms


@dataclass(frozen=True)
class Found:
    offset: int
    timestamp: int


def call_json(call_id: str, at: datetime, tenant_id: str = "acme") -> bytes:
    """An outbound answered call: its plan is one upload."""
    return json.dumps({
        "call_id": call_id, "tenant_id": tenant_id, "started_at": at.isoformat(),
        "direction": "out", "client_phone": "+380501110001", "status": "answered",
        "employee": {"id": "emp-1", "extension": "101"}, "talk_seconds": 30,
        "wait_seconds": 5}).encode()


class CallLog:
    """Partitions of the calls topic; every consumer made while it is installed reads it."""

    def __init__(self, partitions: int = 2) -> None:
        self.partitions: dict[int, list[Message]] = {p: [] for p in range(partitions)}

    def append(self, partition: int, key: bytes | None, value: bytes | None,
               at: datetime) -> int:
        records = self.partitions[partition]
        records.append(Message(TOPIC, partition, len(records), key, value,
                               int(at.timestamp() * 1000)))
        return len(records) - 1

    def consumer(self, **options: Any) -> FakeConsumer:
        return FakeConsumer(self)


class FakeConsumer:
    def __init__(self, log: CallLog) -> None:
        self.log = log
        self.positions: dict[TopicPartition, int] = {}

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(self.log.partitions) if topic == TOPIC else set()

    async def offsets_for_times(self, times: dict[TopicPartition, int]
                                ) -> dict[TopicPartition, Found | None]:
        found: dict[TopicPartition, Found | None] = {}
        for tp, ms in times.items():
            first = next((m for m in self.log.partitions[tp.partition] if m.timestamp >= ms),
                         None)
            found[tp] = Found(first.offset, first.timestamp) if first else None
        return found

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: len(self.log.partitions[tp.partition]) for tp in tps}

    def assign(self, tps: list[TopicPartition]) -> None:
        self.positions = dict.fromkeys(tps, 0)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.positions[tp] = offset

    async def getmany(self, *tps: TopicPartition, timeout_ms: int = 0,
                      max_records: int | None = None) -> dict[TopicPartition, list[Message]]:
        batch = {}
        for tp in tps or tuple(self.positions):
            got = self.log.partitions[tp.partition][self.positions[tp]:][:3]  # small fetches
            if got:
                batch[tp] = got
                self.positions[tp] = got[-1].offset + 1
        if not batch:
            await asyncio.sleep(0)  # as a fetch that found nothing: others get to run
        return batch
