"""Per-key request budgets for retailCRM: at most N requests in any sliding window."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

__all__ = ["CRM_GENERAL_RPS", "CRM_TELEPHONY_RPS", "GUARD_SECONDS", "SlidingWindowLimiter", "Slot"]

CRM_GENERAL_RPS = 10
CRM_TELEPHONY_RPS = 40
# retailCRM counts a request when it arrives; the window is one second plus this much for the
# network's jitter. Stamps are when a request actually left (see `Slot.sent`), not when it
# was let through, so the worker's own delays (a busy event loop, a TLS handshake) need none.
# 30 ms let one request in 4,000 through early (a 503) where the machine was loaded: a
# three-day replay, and the strict pacing test under CI's three test processes.
GUARD_SECONDS = 0.05


class Slot:
    """One admitted request's place in the window."""

    __slots__ = ("at",)

    def __init__(self, at: float) -> None:
        self.at = at

    def sent(self, at: float) -> None:
        """The request went out at `at`: it cannot arrive before, so it counts from then."""
        self.at = max(self.at, at)


class SlidingWindowLimiter:
    """Admit at most `limit` requests in any `window` seconds.

    A leaky bucket (aiolimiter) allows a full burst plus the drain within one second, up to twice
    the limit in a sliding second; retailCRM answers 503 above 10/s, so this keeps the exact log.
    """

    def __init__(
        self, limit: int, window: float = 1.0 + GUARD_SECONDS, *,
        clock: Callable[[], float] = time.monotonic
    ) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("limit must be >= 1 and window > 0")
        self.limit = limit
        self.window = window
        self._clock = clock
        self._slots: list[Slot] = []
        self._lock = asyncio.Lock()
        self.waited_seconds = 0.0

    def _prune(self, now: float) -> None:
        # With a little slack for floating point: 1.4 - 0.4 is 0.9999999999999999.
        self._slots = [slot for slot in self._slots if now - slot.at < self.window - 1e-9]

    async def reserve(self) -> tuple[Slot, float]:
        """Wait for a place in the window; the slot (to mark when the request left) and how
        long this call waited."""
        waited = 0.0
        async with self._lock:
            while True:
                now = self._clock()
                self._prune(now)
                if len(self._slots) < self.limit:
                    slot = Slot(now)
                    self._slots.append(slot)
                    self.waited_seconds += waited
                    return slot, waited
                pause = max(self.window - (now - min(slot.at for slot in self._slots)), 1e-3)
                waited += pause
                await asyncio.sleep(pause)

    async def acquire(self) -> float:
        """Wait for a place; return how long this call waited."""
        _, waited = await self.reserve()
        return waited
