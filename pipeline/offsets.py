"""The commit point of each call-topic partition: offsets advance only over settled events.

callsync settles events out of order (tenants sharing a partition finish independently, held
uploads finish late), and faust-streaming 0.15.3 commits past an unsettled offset at a
partition's head (faust-streaming/faust#606). So the call topic is read without Faust's acks,
and callsync commits itself: each partition's commit point is its first unsettled offset, or
the offset after the last one read when all are settled.

A record is read under the consumer generation it was fetched in. A rebalance starts a new
generation: the leases of the old one stop being live (their lanes drop the work unstarted,
the next owner reads it again from the commit point) and never move a commit point.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

__all__ = ["Committer", "Lease", "OffsetGate", "PartitionKey"]

log = logging.getLogger(__name__)

PartitionKey = tuple[str, int]  # (topic, partition)


@dataclass(eq=False)
class Lease:
    """One record read from a partition. Its work may start only while the lease is live;
    `settle` once its outcome is durable (delivered, dead-lettered or invalid)."""

    partition: _Partition
    generation: int
    offset: int
    stamp: float  # the record's timestamp, epoch seconds
    started: bool = False
    settled: bool = False

    @property
    def live(self) -> bool:
        part = self.partition
        return not part.closing and part.generation == self.generation and not self.settled

    def start(self) -> bool:
        """Mark the work as under way; False if the partition has moved on without it."""
        if not self.live:
            return False
        self.started = True
        return True

    def abandon(self) -> None:
        """The lane dropped the work unstarted (its partition was revoked)."""
        self.started = False
        self.partition.changed.set()

    def settle(self) -> None:
        if self.settled:
            return
        self.settled = True
        self.started = False
        part = self.partition
        part.changed.set()
        if part.generation == self.generation:
            part.pending.pop(self.offset, None)


@dataclass(eq=False)
class _Partition:
    key: PartitionKey
    generation: int
    # Offsets read and not yet settled, in read order (so the first key is the smallest).
    pending: dict[int, Lease] = field(default_factory=dict)
    next_read: int | None = None  # the offset after the last one read
    committed: int | None = None  # the last commit point callsync committed
    closing: bool = False
    changed: asyncio.Event = field(default_factory=asyncio.Event)  # set on settle or abandon

    def point(self) -> int | None:
        if self.pending:
            return next(iter(self.pending))
        return self.next_read


class OffsetGate:
    """Read and settled offsets per partition; the commit points derived from them."""

    def __init__(self) -> None:
        self._parts: dict[PartitionKey, _Partition] = {}
        self.generation = 0

    def read(self, topic: str, partition: int, offset: int, *, generation: int,
             stamp: float) -> Lease:
        key = (topic, partition)
        part = self._parts.get(key)
        if generation < self.generation or (part is not None and (
                generation < part.generation or (generation == part.generation and
                                                 part.closing))):
            # Fetched before the last rebalance: never live, never counted.
            return Lease(_Partition(key, generation, closing=True), generation, offset, stamp)
        self.generation = generation
        if part is not None and part.generation == generation and \
                part.next_read is not None and offset < part.next_read:
            # Read again within one generation (Faust hands the last record of a partition out
            # twice after a restart or a rebalance, and re-reads after a seek back): the first
            # read of it is pending or settled already, so this one is a duplicate — never
            # live, never counted, and it moves no commit point.
            return Lease(_Partition(key, generation, closing=True), generation, offset, stamp)
        if part is None or part.generation != generation:
            # A new generation reads from the commit point again; what the old one handed out
            # is no longer live.
            if part is not None:
                part.closing = True
            part = self._parts[key] = _Partition(key, generation, committed=(
                part.committed if part is not None else None))
        lease = Lease(part, generation, offset, stamp)
        part.pending[offset] = lease
        part.next_read = offset + 1
        return lease

    def revoke(self, keys: Iterable[PartitionKey]) -> None:
        """No work of these partitions may start any more; what runs may still settle."""
        for key in keys:
            part = self._parts.get(key)
            if part is not None:
                part.closing = True

    def forget(self, keys: Iterable[PartitionKey]) -> None:
        for key in keys:
            self._parts.pop(key, None)

    def running(self, keys: Iterable[PartitionKey]) -> int:
        """Works of these partitions under way in a lane right now."""
        return sum(1 for key in keys if key in self._parts
                   for lease in self._parts[key].pending.values() if lease.started)

    async def settled_any(self, keys: Iterable[PartitionKey], within: float) -> None:
        """Wait until some work of these partitions settles or is dropped (or `within` s)."""
        events = [self._parts[key].changed for key in keys if key in self._parts]
        for event in events:
            event.clear()
        waits = [asyncio.ensure_future(event.wait()) for event in events]
        if not waits:
            return
        _, undone = await asyncio.wait(waits, timeout=max(0.0, within),
                                       return_when=asyncio.FIRST_COMPLETED)
        for task in undone:
            task.cancel()

    def commit_points(self, keys: Iterable[PartitionKey] | None = None) -> dict[PartitionKey, int]:
        """Where each partition may be committed to now, where that moved since the last
        commit. Closing partitions are included: their settled prefix is committed once more
        before they go."""
        points = {}
        for key in list(self._parts) if keys is None else keys:
            part = self._parts.get(key)
            if part is None:
                continue
            point = part.point()
            if point is not None and point != part.committed:
                points[key] = point
        return points

    def committed(self, points: dict[PartitionKey, int]) -> None:
        for key, point in points.items():
            part = self._parts.get(key)
            if part is not None:
                part.committed = point

    def partitions(self, topic: str) -> list[int]:
        return sorted(p for (t, p) in self._parts if t == topic)

    def lag(self, topic: str, partition: int, highwater: int, now: float) -> tuple[int, float]:
        """(records past the commit point, seconds the oldest unsettled one has waited)."""
        part = self._parts.get((topic, partition))
        if part is None:
            return 0, 0.0
        point = part.point()
        if point is None:
            point = part.committed if part.committed is not None else highwater
        seconds = 0.0
        if part.pending:
            oldest = next(iter(part.pending.values()))
            seconds = max(0.0, now - oldest.stamp)
        return max(0, highwater - point), seconds


class Committer:
    """Commits the gate's points: first the producer is flushed (the ledger's changelog and the
    invalid and dead-letter copies), so an offset is committed only over durable outcomes."""

    def __init__(self, gate: OffsetGate, *, flush: Callable[[], Awaitable[object]],
                 commit: Callable[[dict[PartitionKey, int]], Awaitable[bool]]) -> None:
        self.gate = gate
        self._flush = flush
        self._commit = commit
        self._lock = asyncio.Lock()

    async def commit(self, keys: Iterable[PartitionKey] | None = None) -> dict[PartitionKey, int]:
        async with self._lock:
            points = self.gate.commit_points(keys)
            if not points:
                return {}
            await self._flush()
            if not await self._commit(points):
                return {}
            self.gate.committed(points)
            return points

    async def release(self, keys: Iterable[PartitionKey], *, wait: float
                      ) -> dict[PartitionKey, int]:
        """A rebalance takes these partitions: no new work starts, what runs gets `wait`
        seconds to settle, the settled prefix is committed, and the partitions are forgotten."""
        keys = list(keys)
        self.gate.revoke(keys)
        deadline = time.monotonic() + wait
        while self.gate.running(keys) and time.monotonic() < deadline:
            await self.gate.settled_any(keys, deadline - time.monotonic())
        if self.gate.running(keys):
            log.warning("%d events of revoked partitions still under way; their next owner "
                        "delivers them again", self.gate.running(keys))
        try:
            return await self.commit(keys)
        finally:
            self.gate.forget(keys)
