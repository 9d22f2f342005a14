"""The lag gauges: seconds, not milliseconds; the series of a lost partition go with it."""

from __future__ import annotations

from prometheus_client import REGISTRY

from pipeline.observability.lag import LagMetrics
from pipeline.streams.offsets import OffsetGate

T = "lag-test.calls"


def gauge(name: str, partition: int) -> float | None:
    return REGISTRY.get_sample_value(name, {"topic": T, "partition": str(partition)})


def test_lag_seconds_is_the_wait_of_the_oldest_unsettled_event_in_seconds() -> None:
    gate = OffsetGate()
    # Faust hands the record timestamp in seconds: a call stamped 90 s ago waits 90 s, not
    # 90,000 s (nor 57 years, as a seconds-for-milliseconds mix-up once made it).
    gate.read(T, 0, 5, generation=1, stamp=1_764_000_000.0)
    LagMetrics(clock=lambda: 1_764_000_090.0).publish(T, gate, [(0, 9)])
    assert gauge("callsync_consumer_lag_seconds", 0) == 90.0
    assert gauge("callsync_consumer_lag_records", 0) == 4.0


def test_the_series_of_a_partition_the_worker_lost_are_removed() -> None:
    gate = OffsetGate()
    gate.read(T, 1, 0, generation=1, stamp=100.0)
    gate.read(T, 2, 0, generation=1, stamp=100.0)
    metrics = LagMetrics(clock=lambda: 110.0)
    metrics.publish(T, gate, [(1, 1), (2, 1)])
    assert gauge("callsync_consumer_lag_seconds", 2) == 10.0
    metrics.publish(T, gate, [(1, 1)])  # partition 2 was revoked
    assert gauge("callsync_consumer_lag_seconds", 2) is None
    assert gauge("callsync_consumer_lag_records", 2) is None
    metrics.forget(T, [1])
    assert gauge("callsync_consumer_lag_seconds", 1) is None
