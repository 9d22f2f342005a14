"""Consumer lag of the call topic: records behind the commit point, and the age of the oldest
unsettled event, per partition this worker owns."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from pipeline.observability.metrics import CONSUMER_LAG_RECORDS, CONSUMER_LAG_SECONDS
from pipeline.streams.offsets import OffsetGate

__all__ = ["LagMetrics"]


class LagMetrics:
    """Exports the gate's lag; the series of a partition the worker lost go with it."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._exported: set[tuple[str, int]] = set()

    def publish(self, topic: str, gate: OffsetGate,
                highwaters: Iterable[tuple[int, int]]) -> None:
        now = self._clock()
        seen = set()
        for partition, highwater in highwaters:
            records, seconds = gate.lag(topic, partition, highwater, now)
            CONSUMER_LAG_RECORDS.labels(topic, str(partition)).set(records)
            CONSUMER_LAG_SECONDS.labels(topic, str(partition)).set(seconds)
            seen.add((topic, partition))
        self.forget(topic, [p for t, p in self._exported - seen if t == topic])
        self._exported |= seen

    def forget(self, topic: str, partitions: Iterable[int]) -> None:
        for partition in partitions:
            for gauge in (CONSUMER_LAG_RECORDS, CONSUMER_LAG_SECONDS):
                try:
                    gauge.remove(topic, str(partition))
                except KeyError:
                    pass
            self._exported.discard((topic, partition))
