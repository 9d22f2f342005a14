"""HoleFiller: reads the call-topic offsets Faust never handed out, with a consumer of its own."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from pipeline.offsets import Lease, OffsetGate, PartitionKey

__all__ = ["HoleFiller"]

log = logging.getLogger(__name__)

Accept = Callable[[ConsumerRecord[bytes, bytes], Lease], Awaitable[None]]
# (partition, generation) of each call-topic partition assigned to this worker right now.
Assigned = Callable[[], list[tuple[PartitionKey, int]]]


class HoleFiller:
    """Looks up where each new generation of a partition starts, watches for partitions whose
    log goes on past what was handed out, and reads every hole the gate knows of (see
    pipeline/offsets.py): each record still wanted is handed to `accept` under its lease.

    It works only while `ready()` — no rebalance under way, the tables recovered — so a record it
    hands out meets the same ledger a record Faust hands out would. Faust's consumer lives on a
    thread of its own: nothing here touches it.
    """

    def __init__(self, gate: OffsetGate, *, group_id: str, client_options: Mapping[str, Any],
                 accept: Accept, assigned: Assigned, ready: Callable[[], bool],
                 idle_seconds: float = 5.0, batch: int = 200) -> None:
        self.gate = gate
        self.group_id = group_id
        self.client_options = dict(client_options)
        self.accept = accept
        self.assigned = assigned
        self.ready = ready
        self.idle_seconds = idle_seconds
        self.batch = batch
        self._consumer: AIOKafkaConsumer | None = None
        self._admin: AIOKafkaAdminClient | None = None

    async def run(self, *, interval: float = 1.0) -> None:
        try:
            while True:
                try:
                    await self.step()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("reading the call topic's holes failed; trying again")
                await asyncio.sleep(interval)
        finally:
            await self.close()

    async def close(self) -> None:
        consumer, admin, self._consumer, self._admin = self._consumer, self._admin, None, None
        if consumer is not None:
            await consumer.stop()
        if admin is not None:
            await admin.close()

    async def step(self) -> None:
        if not self.ready():
            return
        consumer = await self._reader()
        await self._look_up_bases(consumer)
        assigned = self.assigned()
        if assigned:
            ends = await consumer.end_offsets([TopicPartition(*key) for key, _ in assigned])
            now = time.monotonic()
            for key, generation in assigned:
                end = ends.get(TopicPartition(*key))
                if end is not None:
                    self.gate.watch(key, generation, end, idle=self.idle_seconds, now=now)
            await self._look_up_bases(consumer)  # of partitions the watch began
        # One sweep a partition, from its first hole to the end of its last: a producer that
        # writes in transactions leaves a marker (an offset with no record) after each one.
        sweeps: dict[tuple[PartitionKey, int], tuple[int, int]] = {}
        for key, generation, start, end in self.gate.holes():
            first, last = sweeps.get((key, generation), (start, end))
            sweeps[(key, generation)] = (min(first, start), max(last, end))
        for (key, generation), (start, end) in sweeps.items():
            if not self.ready():
                return
            await self._fill(consumer, key, generation, start, end)

    async def _reader(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            consumer = AIOKafkaConsumer(**self.client_options, enable_auto_commit=False,
                                        auto_offset_reset="earliest")
            await consumer.start()
            self._consumer = consumer
        return self._consumer

    async def _look_up_bases(self, consumer: AIOKafkaConsumer) -> None:
        unbased = self.gate.unbased()
        if not unbased:
            return
        if self._admin is None:
            admin = AIOKafkaAdminClient(**self.client_options)
            await admin.start()
            self._admin = admin
        tps = [TopicPartition(*key) for key, _ in unbased]
        committed = await self._admin.list_consumer_group_offsets(self.group_id, partitions=tps)
        starts = await consumer.beginning_offsets(tps)
        for (key, generation), tp in zip(unbased, tps, strict=True):
            meta = committed.get(tp)
            base = meta.offset if meta is not None and meta.offset >= 0 else starts[tp]
            self.gate.set_base(key, generation, base)

    async def _fill(self, consumer: AIOKafkaConsumer, key: PartitionKey, generation: int,
                    start: int, end: int) -> None:
        tp = TopicPartition(*key)
        consumer.assign([tp])
        consumer.seek(tp, start)
        position = start
        handed = 0
        while position < end:
            batch = await consumer.getmany(tp, timeout_ms=2000, max_records=self.batch)
            for record in batch.get(tp, []):
                if record.offset >= end:
                    break
                lease = self.gate.fill(key, generation, record.offset,
                                       stamp=_seconds(record.timestamp))
                if lease is not None:
                    handed += 1
                    await self.accept(record, lease)
            reached = await consumer.position(tp)
            if reached <= position:
                break  # nothing came in time; the next step tries again
            self.gate.passed(key, generation, position, min(reached, end))
            position = reached
        if handed:
            log.warning("%s[%d]: %d records Faust did not hand out (offsets %d..%d) were read "
                        "apart and handed to their lanes", key[0], key[1], handed, start,
                        min(position, end) - 1)


def _seconds(timestamp_ms: int | None) -> float:
    return timestamp_ms / 1000 if timestamp_ms and timestamp_ms > 0 else time.time()
