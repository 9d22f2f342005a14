"""Consumer lag of the call topic: records behind, and the age of the oldest undelivered event."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from pipeline.metrics import CONSUMER_LAG_RECORDS, CONSUMER_LAG_SECONDS

__all__ = ["LagTracker"]


class LagTracker:
    """Fed by intake (consumed) and by the lanes (settled); read by a timer."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._pending: dict[tuple[str, int], dict[int, float]] = {}
        self._last: dict[tuple[str, int], tuple[int, float]] = {}

    def consumed(self, topic: str, partition: int, offset: int, timestamp_ms: int) -> None:
        stamp = timestamp_ms / 1000 if timestamp_ms and timestamp_ms > 0 else self._clock()
        self._pending.setdefault((topic, partition), {})[offset] = stamp
        self._last[(topic, partition)] = (offset, stamp)

    def settled(self, topic: str, partition: int, offset: int) -> None:
        self._pending.get((topic, partition), {}).pop(offset, None)

    def lag(self, topic: str, partition: int, highwater: int) -> tuple[int, float]:
        """(records not yet settled or read, seconds the oldest of them has waited)."""
        pending = self._pending.get((topic, partition)) or {}
        last = self._last.get((topic, partition))
        now = self._clock()
        if pending:
            oldest = min(pending)
            # Records are stamped with the call's start; a fresh record's wait is since arrival.
            return highwater - oldest, max(0.0, now - pending[oldest])
        if last is not None and highwater > last[0] + 1:
            return highwater - (last[0] + 1), max(0.0, now - last[1])
        return (0, 0.0) if last is not None else (highwater, 0.0)

    def publish(self, topic: str, highwaters: Iterable[tuple[int, int]]) -> None:
        for partition, highwater in highwaters:
            records, seconds = self.lag(topic, partition, highwater)
            CONSUMER_LAG_RECORDS.labels(topic, str(partition)).set(records)
            CONSUMER_LAG_SECONDS.labels(topic, str(partition)).set(seconds)
