"""The sliding-window limiter never admits more than its limit in any window."""

from __future__ import annotations

import asyncio

import pytest

from pipeline.crm.ratelimit import SlidingWindowLimiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_admits_the_limit_then_waits_for_the_oldest_to_leave_the_window(
        monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.now += seconds

    monkeypatch.setattr(asyncio, "sleep", fake_sleep)
    limiter = SlidingWindowLimiter(3, 1.0, clock=clock)
    stamps = []
    for _ in range(7):
        await limiter.acquire()
        stamps.append(clock.now)
        clock.now += 0.1
    for i, t in enumerate(stamps):
        assert sum(1 for s in stamps if t <= s < t + 1.0) <= 3, (i, stamps)
    assert slept and limiter.waited_seconds == pytest.approx(sum(slept))


async def test_real_clock_pacing_stays_under_the_limit() -> None:
    limiter = SlidingWindowLimiter(5, 0.2)
    loop = asyncio.get_running_loop()
    stamps = []
    for _ in range(12):
        await limiter.acquire()
        stamps.append(loop.time())
    for t in stamps:
        assert sum(1 for s in stamps if t <= s < t + 0.2) <= 5


def test_rejects_nonsense_limits() -> None:
    with pytest.raises(ValueError, match="limit"):
        SlidingWindowLimiter(0)
