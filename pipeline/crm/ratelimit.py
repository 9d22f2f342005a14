"""Per-key request budgets for retailCRM: at most N requests in any sliding window."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

__all__ = ["CRM_GENERAL_RPS", "CRM_TELEPHONY_RPS", "SlidingWindowLimiter"]

CRM_GENERAL_RPS = 10
CRM_TELEPHONY_RPS = 40


class SlidingWindowLimiter:
    """Admit at most `limit` acquisitions in any `window` seconds.

    A leaky bucket (aiolimiter) allows a full burst plus the drain within one second, up to twice
    the limit in a sliding second; retailCRM answers 503 above 10/s, so this keeps the exact log.
    The window is a little over a second by default: the portal stamps arrival, not departure.
    """

    def __init__(
        self, limit: int, window: float = 1.1, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("limit must be >= 1 and window > 0")
        self.limit = limit
        self.window = window
        self._clock = clock
        self._stamps: deque[float] = deque()
        self._lock = asyncio.Lock()
        self.waited_seconds = 0.0

    def _prune(self, now: float) -> None:
        while self._stamps and now - self._stamps[0] >= self.window:
            self._stamps.popleft()

    async def acquire(self) -> float:
        """Wait for a slot; return how long this call waited."""
        waited = 0.0
        async with self._lock:
            while True:
                now = self._clock()
                self._prune(now)
                if len(self._stamps) < self.limit:
                    self._stamps.append(now)
                    self.waited_seconds += waited
                    return waited
                pause = self.window - (now - self._stamps[0])
                waited += pause
                await asyncio.sleep(pause)
