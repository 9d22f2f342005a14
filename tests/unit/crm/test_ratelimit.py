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


async def test_a_request_counts_from_when_it_left_not_from_when_it_was_let_through(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A request let through at 0 that only left at 0.4 (a busy loop, a TLS handshake) can
    arrive at 0.4: the next one past the limit waits for 0.4 + window, not 0 + window."""
    clock = FakeClock()

    async def fake_sleep(seconds: float) -> None:
        clock.now += seconds

    monkeypatch.setattr(asyncio, "sleep", fake_sleep)
    limiter = SlidingWindowLimiter(2, 1.0, clock=clock)
    first, _ = await limiter.reserve()
    await limiter.reserve()
    first.sent(0.4)
    first.sent(0.1)  # a slot never moves back
    clock.now = 1.0
    _, waited = await limiter.reserve()  # the second slot (at 0) is gone, the first is not
    assert waited == 0.0
    _, waited = await limiter.reserve()
    assert clock.now == pytest.approx(1.4) and waited == pytest.approx(0.4)


def test_the_default_window_is_a_second_and_a_small_guard() -> None:
    assert 1.0 < SlidingWindowLimiter(10).window <= 1.05
