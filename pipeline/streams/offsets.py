"""The commit point of each call-topic partition: offsets advance only over settled events.

callsync settles events out of order (tenants sharing a partition finish independently, held
uploads finish late), and faust-streaming 0.15.3 commits past an unsettled offset at a
partition's head (faust-streaming/faust#606). So the call topic is read without Faust's acks,
and callsync commits itself: each partition's commit point is its first unsettled offset, or
the offset after the last one read when all are settled.

A record is read under the consumer generation it was fetched in. A rebalance starts a new
generation: the leases of the old one stop being live (their lanes drop the work unstarted,
the next owner reads it again from the commit point) and never move a commit point.

Faust does not hand out every offset: it drops records fetched under the generation before and
ones that arrive while its flow control is paused, and its position has moved past them. So a
generation's commit point never passes an offset it was not handed: it starts at the group's
committed offset (looked up when the generation begins; no commit before), an offset skipped is
a hole the point waits at, and `HoleFiller` (holes.py) reads the holes with a consumer
of its own and hands their records to the lanes under the partition's lease.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable

from pipeline.streams.leases import Lease, PartitionKey, PartitionState

__all__ = ["Lease", "OffsetGate", "PartitionKey"]  # the first and last re-exported

log = logging.getLogger(__name__)

class OffsetGate:
    """Read and settled offsets per partition; the commit points derived from them."""

    def __init__(self) -> None:
        self._parts: dict[PartitionKey, PartitionState] = {}
        self.generation = 0

    def _stub(self, key: PartitionKey, generation: int, offset: int, stamp: float) -> Lease:
        """A lease never live and never counted: a record read before or out of turn."""
        return Lease(PartitionState(key, generation, closing=True), generation, offset, stamp)

    def _current(self, key: PartitionKey, generation: int) -> PartitionState | None:
        """The partition's state under `generation`, begun anew if that is a new one; None if
        `generation` is over (fetched before the last rebalance)."""
        part = self._parts.get(key)
        if generation < self.generation or (part is not None and (
                generation < part.generation or (generation == part.generation and
                                                 part.closing))):
            return None
        self.generation = generation
        if part is None or part.generation != generation:
            # A new generation reads from the commit point again; what the old one handed out
            # is no longer live.
            if part is not None:
                part.closing = True
            part = self._parts[key] = PartitionState(key, generation, committed=(
                part.committed if part is not None else None))
        return part

    def read(self, topic: str, partition: int, offset: int, *, generation: int,
             stamp: float) -> Lease:
        key = (topic, partition)
        part = self._current(key, generation)
        if part is None or (part.base is not None and offset < part.base):
            return self._stub(key, generation, offset, stamp)
        if part.in_hole(offset):
            part.close_hole(offset, offset + 1)  # handed out late (or by the hole filler)
        elif part.next_read is not None and offset < part.next_read:
            # Read again within one generation (Faust hands the last record of a partition out
            # twice after a restart or a rebalance; the hole filler read it first): the first
            # read of it is pending or settled already, so this one is a duplicate.
            return self._stub(key, generation, offset, stamp)
        else:
            expected = part.expected()
            if expected is not None and offset > expected:
                # Faust skipped these (it drops records it fetched under the generation
                # before, and ones that arrive while its flow control is paused).
                part.add_hole(expected, offset)
                # One offset is most often a transaction's commit marker (it holds no record).
                log.log(logging.DEBUG if offset - expected == 1 else logging.INFO,
                        "%s[%d]: offsets %d..%d were not handed out; they are read apart",
                        topic, partition, expected, offset - 1)
            part.next_read = offset + 1
            if part.first is None:
                part.first = offset
        lease = Lease(part, generation, offset, stamp)
        part.pending[offset] = lease
        part.last_read = time.monotonic()
        return lease

    # -- the hole filler's side -----------------------------------------------------------------

    def unbased(self) -> list[tuple[PartitionKey, int]]:
        """Partitions whose generation's start is still to be looked up."""
        return [(key, part.generation) for key, part in self._parts.items()
                if part.base is None and not part.closing]

    def set_base(self, key: PartitionKey, generation: int, base: int) -> None:
        """Where `generation` of the partition had to start (the group's committed offset, else
        the log's start): what it was handed above that first is a hole."""
        part = self._parts.get(key)
        if part is None or part.generation != generation or part.base is not None:
            return
        part.base = base
        part.close_hole(0, base)
        if part.first is not None and base < part.first:
            part.add_hole(base, part.first)
            log.info("%s[%d]: generation %d began at %d, above its committed offset %d; "
                     "the offsets between are read apart", key[0], key[1], generation,
                     part.first, base)

    def watch(self, key: PartitionKey, generation: int, end: int, *, idle: float,
              now: float | None = None) -> None:
        """A partition assigned under `generation` whose log ends at `end`: records past what was
        read, with nothing read or pending for `idle` seconds, were never handed out — a hole."""
        part = self._current(key, generation)
        if part is None or part.base is None or part.pending or part.holes:
            return
        expected = part.expected()
        now = time.monotonic() if now is None else now
        if expected is None or expected >= end or now - part.last_read < idle:
            return
        part.add_hole(expected, end)
        part.next_read = end
        log.warning("%s[%d]: offsets %d..%d were not handed out in %.0f s; they are read apart",
                    key[0], key[1], expected, end - 1, now - part.last_read)

    def quiet(self, key: PartitionKey, generation: int, *, idle: float, now: float) -> bool:
        """Would `watch` look at this partition now (its log's end is worth asking for)? Yes
        for one not begun under `generation`; else only when nothing was read or is pending
        for `idle` seconds and no hole is open."""
        part = self._parts.get(key)
        if part is None or part.generation != generation:
            return True
        return not part.closing and part.base is not None and not part.pending \
            and not part.holes and now - part.last_read >= idle

    def behind(self, key: PartitionKey, offset: int) -> bool:
        """Is an offset below this one still to be read (or where reading starts unknown)? Its
        record then waits, so that a tenant's calls reach its lane in offset order."""
        part = self._parts.get(key)
        if part is None or part.closing:
            return False
        return part.base is None or bool(part.holes and part.holes[0][0] < offset)

    def holes(self) -> list[tuple[PartitionKey, int, int, int]]:
        """(partition, generation, start, end) of every hole to read, the lowest first."""
        return [(key, part.generation, start, end) for key, part in self._parts.items()
                if not part.closing and part.base is not None for start, end in part.holes]

    def fill(self, key: PartitionKey, generation: int, offset: int, stamp: float
             ) -> Lease | None:
        """A record of a hole, read apart: its lease, or None if it is no longer wanted."""
        part = self._parts.get(key)
        if part is None or part.generation != generation or part.closing or \
                not part.in_hole(offset):
            return None
        part.close_hole(offset, offset + 1)
        lease = Lease(part, generation, offset, stamp)
        part.pending[offset] = lease
        return lease

    def passed(self, key: PartitionKey, generation: int, start: int, end: int) -> None:
        """The hole reader's position passed [start, end): offsets there it did not hand out hold
        no record (transaction markers, or records deleted by retention)."""
        part = self._parts.get(key)
        if part is None or part.generation != generation:
            return
        for lo, hi in part.close_hole(start, end):
            # A transaction's commit marker is one offset; records deleted by retention are more.
            log.log(logging.DEBUG if hi - lo == 1 else logging.WARNING,
                    "%s[%d]: offsets %d..%d hold no record (deleted by retention, or "
                    "transaction markers); the commit point passes them", key[0], key[1], lo,
                    hi - 1)

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
        if point is None:  # the generation's start is still being looked up
            marks = [m for m in (part.committed, part.first, min(part.pending, default=None))
                     if m is not None]
            point = min(marks, default=highwater)
        seconds = 0.0
        if part.pending:
            oldest = part.pending[min(part.pending)]
            seconds = max(0.0, now - oldest.stamp)
        return max(0, highwater - point), seconds
