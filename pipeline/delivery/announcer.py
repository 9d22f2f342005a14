"""A lane's pop-ups and on-call statuses in flight: several calls' at once, each call's in order.

One at a time, a lane's pop-ups went no faster than one a round trip: a portal answering in
0.3 s showed a tenant 3 a second, where retailCRM allows a key 40 telephony requests a second,
and ringing calls queued behind each other (5 a second for each of 50 tenants: p50 1.3 s, p99
2.6 s, 165 of 250 a second shown; with this, p99 116-151 ms and all 250).

So a lane has up to `MAX_ANNOUNCING` announcements under way. What must stay in order does:
a call's stages (its ringing pop-up before its answered one), and the statuses of one user
(busy for one call, restored after another). Each announcement waits for the one before it
with any of the same keys. Starting one waits while the lane has the most under way: the lane
then takes no more events (back-pressure, as before).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable

from pipeline.delivery.work import Work

__all__ = ["MAX_ANNOUNCING", "Announcer"]

# A key revoked while announcements are under way is asked this many times at most before
# the lane knows (each of them is dead-lettered as before); one still waiting for its pace is
# not sent (`pipeline.crm.session.HALT`).
MAX_ANNOUNCING = 4


def _keys(work: Work) -> tuple[str, ...]:
    """What must stay in order with other announcements of the lane: the call, and the user
    whose status it changes."""
    change = work.plan.status_change
    call = "call:" + work.plan.call_id
    return (call,) if change is None else (call, f"user:{change.user_id}")


class Announcer:
    """One lane's announcements under way, and the order they keep."""

    def __init__(self, announce: Callable[[Work], Awaitable[None]], *,
                 limit: int = MAX_ANNOUNCING) -> None:
        # `announce` never raises but for a cancellation (the lane's `_step` deals with the
        # rest): a failed pop-up counts against its work alone.
        self._announce = announce
        self._room = asyncio.Semaphore(limit)
        self._under_way: dict[int, asyncio.Task[None]] = {}  # id(work) -> its announcement
        self._last: dict[str, asyncio.Task[None]] = {}  # key -> its latest announcement

    @property
    def busy(self) -> bool:
        return bool(self._under_way)

    async def start(self, work: Work) -> None:
        """Starts the work's announcement once the lane has room for one; `work.announced`
        once it is over."""
        await self._room.acquire()
        keys = _keys(work)
        before = {task for key in keys if (task := self._last.get(key)) is not None}
        task = asyncio.create_task(self._run(work, before))
        self._under_way[id(work)] = task
        for key in keys:
            self._last[key] = task
        task.add_done_callback(lambda done: self._forget(work, keys, done))

    async def _run(self, work: Work, before: set[asyncio.Task[None]]) -> None:
        try:
            if before:
                await asyncio.wait(before)  # finished or cancelled: either way, its turn is over
            await self._announce(work)
        finally:
            work.announced = True
            self._room.release()

    def _forget(self, work: Work, keys: tuple[str, ...], task: asyncio.Task[None]) -> None:
        self._under_way.pop(id(work), None)
        for key in keys:
            if self._last.get(key) is task:
                del self._last[key]

    async def settled(self, works: Iterable[Work]) -> None:
        """Returns once these works' announcements are over."""
        pending = {task for work in works if (task := self._under_way.get(id(work))) is not None}
        if pending:
            await asyncio.wait(pending)

    async def cancel(self) -> None:
        """The lane stops: what is under way is cancelled (its events were not acked: they are
        read again)."""
        tasks = list(self._under_way.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
