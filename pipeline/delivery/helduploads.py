"""A lane's uploads held for a recording (`recording_wait_seconds`), by call id."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from pipeline.delivery.work import Work

__all__ = ["HeldUploads"]


class HeldUploads:
    """Answered calls that ended without a recording, each waiting until its plan's
    `hold_upload_until` (at most its `hold_seconds` after it was held) for a later record of
    the same call, which replaces it; and calls put off to the lane's next batch (`put_off`),
    to fill its upload."""

    def __init__(self) -> None:
        self._held: dict[str, Work] = {}  # call id -> an upload waiting for its recording
        self._until: dict[str, datetime] = {}  # call id -> when its wait is over
        self._next: list[Work] = []  # uploads for the next batch, in their order

    def __bool__(self) -> bool:
        return bool(self._held or self._next)

    @property
    def has_put_off(self) -> bool:
        return bool(self._next)

    def put_off(self, works: list[Work]) -> None:
        """Ready uploads that go with the next batch's (their steps before it are done)."""
        self._next += works

    def put_off_until_next(self) -> list[Work]:
        """The uploads put off to the batch uploading now (they go ahead of its own)."""
        works, self._next = self._next, []
        return works

    def until(self) -> list[datetime]:
        return list(self._until.values())

    def due(self, now: datetime, stopped: bool) -> list[Work]:
        """Held uploads whose wait is over (or that a broken lane must park now)."""
        due = [w for call_id, w in self._held.items() if stopped or self._until[call_id] <= now]
        for work in due:
            del self._held[work.plan.call_id]
            del self._until[work.plan.call_id]
        return due

    def hold(self, batch: list[Work], now: datetime, stopped: bool) -> list[Work]:
        """The works to upload now. An answered call that ended without a recording waits
        (`recording_wait_seconds`) for a later record of the same call, which replaces it:
        retailCRM keeps a call's first upload, so uploading early would lose the recording."""
        ready = []
        for work in batch:
            call_id = work.plan.call_id
            earlier = self._held.pop(call_id, None)
            held_until = self._until.pop(call_id, None)
            if earlier is not None and earlier is not work:
                work.ack = _acks(earlier.ack, work.ack)  # settled together, with the later one
            until = work.plan.hold_upload_until
            if until is not None:
                until = min(until, held_until or now + timedelta(seconds=work.plan.hold_seconds))
            if work.broken is None and not stopped and until is not None and now < until:
                self._held[call_id] = work
                self._until[call_id] = until
            else:
                ready.append(work)
        return ready

    def drop_stale(self) -> int:
        """Held uploads of records whose partition was revoked are dropped unstarted: their
        next owner reads them again from the commit point."""
        stale = [w for w in [*self._held.values(), *self._next]
                 if w.lease is not None and not w.lease.live]
        for work in stale:
            if self._held.get(work.plan.call_id) is work:
                del self._held[work.plan.call_id]
                del self._until[work.plan.call_id]
            if work.lease is not None:
                work.lease.abandon()
        gone = {id(w) for w in stale}
        self._next = [w for w in self._next if id(w) not in gone]
        return len(stale)


def _acks(*acks: Callable[[], object]) -> Callable[[], None]:
    def ack() -> None:
        for one in acks:
            one()

    return ack
