"""The sliding-window limiter never admits more than its limit in any window."""

from __future__ import annotations

import asyncio
import gc
import weakref

import pytest

from pipeline.crm.ratelimit import SlidingWindowLimiter, Slot


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now


async def test_admits_the_limit_then_waits_for_the_oldest_to_leave_the_window(
        clock: FakeClock) -> None:
    slept = clock.slept
    limiter = SlidingWindowLimiter(3, 1.0, guard=0.0, clock=clock)
    stamps = []
    for _ in range(7):
        await limiter.acquire()
        stamps.append(clock.now)
        clock.now += 0.1
    for i, t in enumerate(stamps):
        assert sum(1 for s in stamps if t <= s < t + 1.0) <= 3, (i, stamps)
    assert slept and limiter.waited_seconds == pytest.approx(sum(slept))


async def test_real_clock_pacing_stays_under_the_limit() -> None:
    """On the real clock, as the session uses it: each request is stamped when it left and
    tells its slot so. (Stamping without telling the slot measured the test's own delays: a
    process preempted between the limiter's clock read and the stamp, under CI's three test
    processes, put six stamps in one window while the limiter had admitted five.)"""
    limiter = SlidingWindowLimiter(5, 0.2, guard=0.0)
    loop = asyncio.get_running_loop()
    stamps = []
    for _ in range(12):
        slot, _ = await limiter.reserve()
        await asyncio.sleep(0)  # the loop may run other work before the request leaves
        stamps.append(loop.time())
        slot.sent(stamps[-1])
    for t in stamps:
        # the limiter's own slack for floating point (see `_prune`)
        assert sum(1 for s in stamps if t <= s < t + 0.2 - 1e-9) <= 5, stamps
    assert stamps[-1] - stamps[0] >= 0.4 - 1e-9  # twelve at five a window: two waits at least


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """A fake clock that `asyncio.sleep` moves on."""
    clock = FakeClock()

    async def fake_sleep(seconds: float) -> None:
        clock.slept.append(seconds)
        clock.now += seconds

    monkeypatch.setattr(asyncio, "sleep", fake_sleep)
    return clock


def test_rejects_nonsense_limits() -> None:
    with pytest.raises(ValueError, match="limit"):
        SlidingWindowLimiter(0)


async def test_a_request_counts_from_when_it_left_not_from_when_it_was_let_through(
        clock: FakeClock) -> None:
    """A request let through at 0 that only left at 0.4 (a busy loop, a TLS handshake) can
    arrive at 0.4: the next one past the limit waits for 0.4 + window, not 0 + window."""
    limiter = SlidingWindowLimiter(2, 1.0, guard=0.0, clock=clock)
    first, _ = await limiter.reserve()
    second, _ = await limiter.reserve()
    second.sent(0.0)
    first.sent(0.4)
    first.sent(0.1)  # a slot never moves back
    clock.now = 1.0
    _, waited = await limiter.reserve()  # the second slot (at 0) is gone, the first is not
    assert waited == 0.0
    _, waited = await limiter.reserve()
    assert clock.now == pytest.approx(1.4) and waited == pytest.approx(0.4)


def test_the_default_window_is_a_second_and_a_small_guard() -> None:
    limiter = SlidingWindowLimiter(10)
    assert limiter.window == 1.0 and 0.0 < limiter.guard <= 0.05


def test_an_answer_bounds_when_a_request_arrived_the_guard_otherwise() -> None:
    """Until its answer, a request that left at 1.0 may arrive up to the guard later; an
    answer within the guard says it arrived by then; a later one says nothing new."""
    freed: list[str] = []
    slot = Slot(0.9, 0.05, lambda: freed.append("freed"))
    slot.sent(1.0)  # its time is known now: a waiter looks again
    assert slot.arrived_by == pytest.approx(1.05) and freed == ["freed"]
    slot.sent(1.02)
    assert slot.arrived_by == pytest.approx(1.07) and freed == ["freed"]
    slot.answered(1.2)  # after the guard: the guard is still the tighter bound
    assert slot.arrived_by == pytest.approx(1.07) and freed == ["freed"]
    slot.answered(1.03)
    assert slot.arrived_by == pytest.approx(1.03) and freed == ["freed"] * 2
    slot.answered(1.05)  # an answer never moves it later
    assert slot.arrived_by == pytest.approx(1.03) and freed == ["freed"] * 2


async def test_a_place_comes_free_a_second_after_the_answer_when_it_beats_the_guard(
        clock: FakeClock) -> None:
    limiter = SlidingWindowLimiter(2, 1.0, guard=0.05, clock=clock)
    answered, _ = await limiter.reserve()
    unanswered, _ = await limiter.reserve()
    unanswered.sent(0.0)  # never answered: counts from 0 + the guard
    answered.sent(0.0)
    answered.answered(0.01)
    clock.now = 0.5
    _, waited = await limiter.reserve()
    assert clock.now == pytest.approx(1.01) and waited == pytest.approx(0.51)
    _, waited = await limiter.reserve()
    assert clock.now == pytest.approx(1.05) and waited == pytest.approx(0.04)


async def test_a_waiter_looks_again_when_an_answer_frees_a_place_early(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The waiter sleeps for the guarded bound; an answer that comes sooner wakes it."""
    clock = FakeClock()
    asked: list[float] = []

    async def long_sleep(seconds: float) -> None:
        asked.append(seconds)
        await asyncio.Event().wait()  # only an answer can end this wait

    real_sleep = asyncio.sleep
    monkeypatch.setattr(asyncio, "sleep", long_sleep)
    limiter = SlidingWindowLimiter(1, 1.0, guard=0.5, clock=clock)
    first, _ = await limiter.reserve()
    first.sent(0.0)
    waiter = asyncio.ensure_future(limiter.reserve())
    for _ in range(5):
        await real_sleep(0)
    assert asked == [pytest.approx(1.5)] and not waiter.done()
    clock.now = 1.2
    first.answered(0.1)  # arrived by 0.1: the place is free from 1.1
    _, waited = await asyncio.wait_for(waiter, 5)
    assert waited == pytest.approx(1.2)


async def test_a_let_go_limiter_is_freed_without_the_cycle_collector() -> None:
    """Its slots wake it through an object of their own: no cycle keeps a let-go lane's
    limiter (and what holds it) until the collector runs."""
    gc.disable()
    try:
        limiter = SlidingWindowLimiter(2, guard=0.0)
        slot, _ = await limiter.reserve()
        slot.answered(0.0)
        gone = weakref.ref(limiter)
        del limiter, slot
        assert gone() is None
    finally:
        gc.enable()


async def test_a_request_not_yet_left_holds_its_place_however_long_it_waits(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A request let through may wait longer than the window before it leaves (for one of the
    portal's pooled connections, held by slow answers): it would then arrive with the ones let
    through after it. It holds its place until it leaves, and counts a window from then."""
    clock = FakeClock()
    asked: list[float] = []

    async def long_sleep(seconds: float) -> None:
        asked.append(seconds)
        await asyncio.Event().wait()  # only a slot's news ends a wait

    real_sleep = asyncio.sleep
    monkeypatch.setattr(asyncio, "sleep", long_sleep)
    limiter = SlidingWindowLimiter(2, 1.0, guard=0.0, clock=clock)
    waiting, _ = await limiter.reserve()
    gone, _ = await limiter.reserve()
    gone.sent(0.0)
    clock.now = 1.6  # the first still waits for a connection
    _, waited = await limiter.reserve()  # the one that left is out of the window
    assert waited == 0.0
    waiter = asyncio.ensure_future(limiter.reserve())
    try:
        for _ in range(5):
            await real_sleep(0)
        assert not waiter.done()  # 1.6 s on, the first still holds its place
        waiting.sent(1.7)
        for _ in range(5):
            await real_sleep(0)
        assert not waiter.done() and asked[-1] == pytest.approx(1.0 - (1.6 - 1.7))
    finally:
        waiter.cancel()


async def test_a_waiter_looks_again_when_a_request_leaves(
        monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    asked: list[float] = []

    async def long_sleep(seconds: float) -> None:
        asked.append(seconds)
        await asyncio.Event().wait()  # only a slot's news can end this wait

    real_sleep = asyncio.sleep
    monkeypatch.setattr(asyncio, "sleep", long_sleep)
    limiter = SlidingWindowLimiter(1, 1.0, guard=0.0, clock=clock)
    first, _ = await limiter.reserve()
    waiter = asyncio.ensure_future(limiter.reserve())
    for _ in range(5):
        await real_sleep(0)
    assert asked == [1.0] and not waiter.done()
    try:
        first.sent(0.5)  # it left: the waiter now sleeps until 1.5
        for _ in range(5):
            await real_sleep(0)
        assert asked == [1.0, pytest.approx(1.5)] and not waiter.done()
    finally:
        waiter.cancel()


def test_a_request_that_ends_unseen_counts_from_its_end() -> None:
    """Failed or given up with no sign it was written (or a transport that tells nothing): it
    may have reached the portal, so it counts from its end; one seen to leave keeps its time."""
    unseen = Slot(0.0, 0.05, lambda: None)
    unseen.ended(2.0)
    assert unseen.arrived_by == pytest.approx(2.05)
    seen = Slot(0.0, 0.05, lambda: None)
    seen.sent(0.5)
    seen.ended(2.0)
    assert seen.arrived_by == pytest.approx(0.55)
