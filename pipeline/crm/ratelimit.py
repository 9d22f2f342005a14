"""Per-key request budgets for retailCRM: at most N requests in any sliding window."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable

__all__ = ["CRM_GENERAL_RPS", "CRM_TELEPHONY_RPS", "GUARD_SECONDS", "Pacing",
           "SlidingWindowLimiter", "Slot"]

CRM_GENERAL_RPS = 10
CRM_TELEPHONY_RPS = 40
# retailCRM counts a request when it arrives. Until its answer is back, a request is taken to
# arrive at most this long after it left (the network's jitter). Stamps are when a request
# was actually written (see `Slot.sent`), so the worker's own delays (a busy event loop, a
# TLS handshake) need none: stamped when its writing began, a request of a replay once
# reached the double 0.3 s later, and drew a 503. 30 ms let one request in 4,000 through
# early where the machine was loaded: a three-day replay, and the strict pacing test under
# CI's three test processes. An answer bounds the arrival exactly (`Slot.answered`), so
# against a portal that answers within the guard the window is a second and the answer's time.
GUARD_SECONDS = 0.05


class Slot:
    """One admitted request's place in the window. Until the request has left it counts as
    arriving later than any other (it may wait for one of the portal's pooled connections for
    longer than the window); once it left, for a second from the latest moment it can have
    arrived, which is what the limiter knows of it so far."""

    __slots__ = ("_answered", "_earlier", "_guard", "_left", "_out")

    def __init__(self, at: float, guard: float, earlier: Callable[[], None]) -> None:
        self._left = at
        self._guard = guard
        self._out = False
        self._answered: float | None = None
        self._earlier = earlier  # told when `arrived_by` becomes known or moves back

    @property
    def arrived_by(self) -> float:
        """It left at `_left` and arrived within the guard, and before any answer came back;
        not known (infinite) before it left."""
        if not self._out:
            return math.inf
        latest = self._left + self._guard
        return latest if self._answered is None else min(latest, self._answered)

    def sent(self, at: float) -> None:
        """The request went out at `at`: it cannot arrive before, so it counts from then."""
        self._left = max(self._left, at)
        if not self._out:
            self._out = True
            self._earlier()

    def answered(self, at: float) -> None:
        """An answer came back at `at`: the portal had counted the request by then."""
        before = self.arrived_by
        self._out = True
        self._answered = at if self._answered is None else min(self._answered, at)
        if self.arrived_by < before:
            self._earlier()

    def ended(self, at: float) -> None:
        """The request is over at `at`, answered or not. One never seen to leave (it failed or
        was given up before a byte was written, or its transport tells nothing) counts as
        leaving now: it may have reached the portal."""
        if not self._out:
            self.sent(at)


class _Freed:
    """Wakes the limiter's waiter when a slot's time becomes known or moves back. Its event is
    made by the first wait (an Event holds a deque: a kilobyte a lane, for lanes that never
    wait). The slots hold this, not the limiter, so a let-go lane's limiter is freed without
    the cycle collector."""

    __slots__ = ("event",)

    def __init__(self) -> None:
        self.event: asyncio.Event | None = None

    def __call__(self) -> None:
        if self.event is not None:
            self.event.set()


class SlidingWindowLimiter:
    """Admit at most `limit` requests in any `window` seconds of their arrivals.

    A leaky bucket (aiolimiter) allows a full burst plus the drain within one second, up to twice
    the limit in a sliding second; retailCRM answers 503 above 10/s, so this keeps the exact log.
    """

    def __init__(
        self, limit: int, window: float = 1.0, *, guard: float = GUARD_SECONDS,
        clock: Callable[[], float] = time.monotonic
    ) -> None:
        if limit < 1 or window <= 0 or guard < 0:
            raise ValueError("limit must be >= 1, window > 0 and guard >= 0")
        self.limit = limit
        self.window = window
        self.guard = guard
        self._clock = clock
        self._slots: list[Slot] = []
        self._lock = asyncio.Lock()
        self._freed = _Freed()
        self.waited_seconds = 0.0

    def _prune(self, now: float) -> None:
        # With a little slack for floating point: 1.4 - 0.4 is 0.9999999999999999.
        self._slots = [slot for slot in self._slots
                       if now - slot.arrived_by < self.window - 1e-9]

    async def reserve(self) -> tuple[Slot, float]:
        """Wait for a place in the window; the slot (to mark when the request left and when
        its answer came) and how long this call waited."""
        async with self._lock:
            started = now = self._clock()
            while True:
                self._prune(now)
                if len(self._slots) < self.limit:
                    slot = Slot(now, self.guard, self._freed)
                    self._slots.append(slot)
                    self.waited_seconds += now - started
                    return slot, now - started
                oldest = min(slot.arrived_by for slot in self._slots)
                # None has left yet: the first to leave wakes this, and it counts a window on.
                await self._pause(self.window if oldest == math.inf
                                  else max(self.window - (now - oldest), 1e-3))
                now = self._clock()

    async def _pause(self, seconds: float) -> None:
        """Sleep `seconds`, or less if an answer frees a place sooner."""
        if self._freed.event is None:
            self._freed.event = asyncio.Event()
        self._freed.event.clear()
        sleep = asyncio.ensure_future(asyncio.sleep(seconds))
        freed = asyncio.ensure_future(self._freed.event.wait())
        try:
            await asyncio.wait((sleep, freed), return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleep.cancel()
            freed.cancel()

    async def acquire(self) -> float:
        """Wait for a place for a request that leaves at once; return how long this waited."""
        slot, waited = await self.reserve()
        slot.sent(self._clock())
        return waited


class Pacing:
    """The two budgets a portal's requests share: general and `/telephony/*`. retailCRM counts
    per key and per IP ("from one IP"), so every key of one portal on this worker (tenants
    sharing a portal) goes through one pair."""

    __slots__ = ("general", "telephony")

    def __init__(self, general_rps: int = CRM_GENERAL_RPS,
                 telephony_rps: int = CRM_TELEPHONY_RPS) -> None:
        self.general = SlidingWindowLimiter(general_rps)
        self.telephony = SlidingWindowLimiter(telephony_rps)
