"""A record's lease on its partition, and what one generation of a partition has read, left
pending and not been handed (its holes): the state the commit point is derived from."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

__all__ = ["Lease", "PartitionKey", "PartitionState"]

PartitionKey = tuple[str, int]  # (topic, partition)


@dataclass(eq=False)
class Lease:
    """One record read from a partition. Its work may start only while the lease is live;
    `settle` once its outcome is durable (delivered, dead-lettered or invalid)."""

    partition: PartitionState
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
class PartitionState:
    key: PartitionKey
    generation: int
    # Offsets read and not yet settled (in read order; holes filled late come after).
    pending: dict[int, Lease] = field(default_factory=dict)
    next_read: int | None = None  # the offset after the highest one read
    first: int | None = None  # the first offset this generation was handed
    # Where this generation must start: the group's committed offset (else the log's start)
    # when it began. Unknown until looked up; no commit point before.
    base: int | None = None
    # Offsets this generation should have read and was not handed, as [start, end) ranges:
    # the commit point waits at the first, and the hole filler reads them itself.
    holes: list[list[int]] = field(default_factory=list)
    committed: int | None = None  # the last commit point callsync committed
    closing: bool = False
    changed: asyncio.Event = field(default_factory=asyncio.Event)  # set on settle or abandon
    last_read: float = field(default_factory=time.monotonic)

    def expected(self) -> int | None:
        return self.next_read if self.next_read is not None else self.base

    def in_hole(self, offset: int) -> bool:
        return any(start <= offset < end for start, end in self.holes)

    def add_hole(self, start: int, end: int) -> None:
        if start < end:
            self.holes = _merged([*self.holes, [start, end]])

    def close_hole(self, start: int, end: int) -> list[list[int]]:
        """Take [start, end) out of the holes; the ranges that were taken."""
        kept: list[list[int]] = []
        taken: list[list[int]] = []
        for lo, hi in self.holes:
            if hi <= start or lo >= end:
                kept.append([lo, hi])
                continue
            kept += [r for r in ([lo, start], [end, hi]) if r[0] < r[1]]
            taken.append([max(lo, start), min(hi, end)])
        self.holes = kept
        return taken

    def point(self) -> int | None:
        if self.base is None:
            return None
        marks = [m for m in (self.next_read, min(self.pending, default=None),
                             self.holes[0][0] if self.holes else None) if m is not None]
        return max(self.base, min(marks, default=self.base))


def _merged(ranges: list[list[int]]) -> list[list[int]]:
    merged: list[list[int]] = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return merged
