"""HoleFiller reads the call-topic offsets Faust never handed out; InOrder keeps offset order."""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from pipeline.streams.offsets import Lease, OffsetGate, PartitionKey

__all__ = ["HoleFiller", "InOrder"]

log = logging.getLogger(__name__)

Accept = Callable[[ConsumerRecord[bytes, bytes], Lease], Awaitable[None]]
# (partition, generation) of each call-topic partition assigned to this worker right now.
Assigned = Callable[[], list[tuple[PartitionKey, int]]]


class HoleFiller:
    """Looks up where each new generation of a partition starts, watches for partitions whose
    log goes on past what was handed out, and reads every hole the gate knows of (see
    pipeline/streams/offsets.py): each record still wanted is handed to `accept` under its lease.

    It works only while `ready()` — no rebalance under way, the tables recovered — so a record it
    hands out meets the same ledger a record Faust hands out would. Faust's consumer lives on a
    thread of its own: nothing here touches it.
    """

    def __init__(self, gate: OffsetGate, *, group_id: str, client_options: Mapping[str, Any],
                 accept: Accept, assigned: Assigned, ready: Callable[[], bool],
                 order: InOrder | None = None, idle_seconds: float = 5.0,
                 batch: int = 200, clock: Callable[[], float] = time.monotonic) -> None:
        self.gate = gate
        self.group_id = group_id
        self.client_options = dict(client_options)
        self.accept = accept
        self.assigned = assigned
        self.ready = ready
        self.order = order
        self.idle_seconds = idle_seconds
        self.batch = batch
        self.clock = clock  # the gate stamps reads with time.monotonic; a test moves this on
        self._consumer: AIOKafkaConsumer | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Step now, not at the next interval (records wait for a start or a hole)."""
        self._wake.set()

    async def run(self, *, interval: float = 1.0) -> None:
        try:
            while True:
                try:
                    await self.step()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("reading the call topic's holes failed; trying again")
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), interval)
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
        await self._release()
        now = self.clock()
        # Only partitions that could have a tail hole: one that reads goes on by itself.
        assigned = [(key, generation) for key, generation in self.assigned()
                    if self.gate.quiet(key, generation, idle=self.idle_seconds, now=now)]
        if assigned:
            ends = await consumer.end_offsets([TopicPartition(*key) for key, _ in assigned])
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
            await self._release()

    async def _release(self) -> None:
        if self.order is not None:
            await self.order.release_all()

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


Hand = Callable[[], Awaitable[None]]


class InOrder:
    """Hands a partition's records on in offset order across holes: a record above an offset
    still to be read (a hole, or a generation whose start is being looked up) waits until the
    hole's record was handed on, so that a caller's first call still makes the lead."""

    def __init__(self, gate: OffsetGate, *, max_waiting: int = 5000) -> None:
        self.gate = gate
        self.max_waiting = max_waiting
        self._waiting: dict[PartitionKey, list[tuple[int, int, Hand]]] = {}
        self._locks: dict[PartitionKey, asyncio.Lock] = {}
        self._released = asyncio.Event()
        self._seq = 0  # ties (a record handed out twice) keep their arrival order

    def waiting(self, key: PartitionKey) -> int:
        return len(self._waiting.get(key, ()))

    async def admit(self, key: PartitionKey, offset: int, hand: Hand) -> None:
        """Hand the record on now if nothing below it is still to be read, else once it is.
        Waits (back-pressure on the agent) while too many records of the partition wait."""
        while self.waiting(key) >= self.max_waiting and self.gate.behind(key, offset):
            self._released.clear()
            await self._released.wait()
        self._seq += 1
        bisect.insort(self._waiting.setdefault(key, []), (offset, self._seq, hand),
                      key=lambda entry: entry[:2])
        await self.release(key)

    async def release(self, key: PartitionKey) -> None:
        """Hand on, in offset order, the waiting records nothing below is still missing for."""
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            waiting = self._waiting.get(key, [])
            while waiting and not self.gate.behind(key, waiting[0][0]):
                _, _, hand = waiting.pop(0)
                self._released.set()
                await hand()
            if not waiting:
                self._waiting.pop(key, None)

    async def release_all(self) -> None:
        for key in list(self._waiting):
            await self.release(key)
