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
# Seeks back to an unread offset before it is taken for one that holds no record.
MAX_REWINDS = 4


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
    # Offsets read and not yet settled (usually in read order, the smallest first).
    pending: dict[int, Lease] = field(default_factory=dict)
    next_read: int | None = None  # the offset after the last one read
    committed: int | None = None  # the last commit point callsync committed
    closing: bool = False
    changed: asyncio.Event = field(default_factory=asyncio.Event)  # set on settle or abandon
    # Where this generation must start: the partition's committed offset when it was assigned.
    # Records above it read first mean some were skipped: the point stays here (see `hole`).
    base: int | None = None
    seen: list[list[int]] = field(default_factory=list)  # offsets read: [start, end) ranges
    rewound_at: float | None = None  # when a rewind to the hole was last asked for
    rewinds: int = 0  # rewinds asked for without the hole filling

    def saw(self, offset: int) -> bool:
        return any(start <= offset < end for start, end in self.seen)

    def see(self, offset: int) -> None:
        self.seen.append([offset, offset + 1])
        self.seen.sort()
        merged: list[list[int]] = []
        for start, end in self.seen:
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        self.seen = merged

    def _first_unread(self) -> int:
        """The first offset, from where this generation must start, that it has not read."""
        start = self.seen[0][0] if self.base is None else min(self.base, self.seen[0][0])
        cursor = start
        for first, end in self.seen:
            if first > cursor:
                break
            cursor = max(cursor, end)
        return cursor

    def fill(self) -> tuple[int, int]:
        """Take every offset from the start to the last one read for read: offsets no seek
        back brings (transaction markers, records deleted by retention)."""
        start = self.seen[0][0] if self.base is None else min(self.base, self.seen[0][0])
        self.seen = [[start, self.seen[-1][1]]]
        return start, self.seen[-1][1]

    def hole(self) -> int | None:
        """An offset this generation should have read and has not, with later ones read (Faust
        dropped it as read before, or its records started above the committed offset)."""
        if not self.seen:
            return None
        cursor = self._first_unread()
        return cursor if cursor < self.seen[-1][1] else None

    def point(self) -> int | None:
        if not self.seen:
            return self.next_read
        point = self._first_unread()  # never past an offset this generation has not read
        if self.pending:
            point = min(point, min(self.pending))
        return point


class OffsetGate:
    """Read and settled offsets per partition; the commit points derived from them."""

    def __init__(self) -> None:
        self._parts: dict[PartitionKey, _Partition] = {}
        self.generation = 0
        # The last point committed per partition, kept past a revoke: where a later generation
        # on this worker must start at the latest.
        self._committed: dict[PartitionKey, int] = {}

    def read(self, topic: str, partition: int, offset: int, *, generation: int,
             stamp: float, base: int | None = None) -> Lease:
        """`base`: the partition's committed offset as the consumer knows it (where a new
        generation's reading must start)."""
        key = (topic, partition)
        part = self._parts.get(key)
        if generation < self.generation or (part is not None and (
                generation < part.generation or (generation == part.generation and
                                                 part.closing))):
            # Fetched before the last rebalance: never live, never counted.
            return Lease(_Partition(key, generation, closing=True), generation, offset, stamp)
        self.generation = generation
        if part is not None and part.generation == generation and part.saw(offset):
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
            # Committed offsets only grow: the larger of what the consumer last saw on the
            # broker and what this worker last committed is the tightest bound to start at.
            known = [b for b in (base, self._committed.get(key)) if b is not None]
            part = self._parts[key] = _Partition(
                key, generation, committed=part.committed if part is not None else None,
                base=max(known) if known else None)
        lease = Lease(part, generation, offset, stamp)
        part.pending[offset] = lease
        part.see(offset)
        part.next_read = max(part.next_read or 0, offset + 1)
        return lease

    def rewind(self, topic: str, partition: int, *, every: float = 3.0,
               now: float | None = None) -> int | None:
        """The offset this generation was not handed, with later ones read (Faust dropped it
        as read before, or handed it out under the generation before; a generation started
        above the committed offset), while the commit point waits for it: asked every `every`
        seconds; after MAX_REWINDS asks it is given up — taken for an offset holding no record
        (transaction markers, retention) or lost to Faust — with a warning naming it."""
        part = self._parts.get((topic, partition))
        if part is None or part.closing:
            return None
        hole = part.hole()
        if hole is None:
            part.rewinds = 0
            return None
        now = time.monotonic() if now is None else now
        if part.rewound_at is not None and now - part.rewound_at < every:
            return None
        if part.rewinds >= MAX_REWINDS:
            _, end = part.fill()
            log.warning("%s[%d]: offsets %d..%d were never handed out (%d checks); the commit "
                        "point moves on (offsets holding no record, e.g. transaction markers, "
                        "or records Faust dropped: replay them if the CRM misses calls)",
                        topic, partition, hole, end - 1, part.rewinds)
            part.rewinds = 0
            return None
        part.rewinds += 1
        part.rewound_at = now
        return hole

    def hole(self, topic: str, partition: int) -> int | None:
        part = self._parts.get((topic, partition))
        return part.hole() if part is not None else None

    def seen(self, topic: str, partition: int) -> list[list[int]]:
        part = self._parts.get((topic, partition))
        return [list(r) for r in part.seen[:3]] if part is not None else []

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
            self._committed[key] = point
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
