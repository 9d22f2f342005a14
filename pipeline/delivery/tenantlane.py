"""One tenant's delivery lane: its own key, pace, batches and failures, apart from the rest."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from pipeline.crm.client import MAX_CALLS_PER_UPLOAD, MAX_PER_UPLOAD
from pipeline.delivery.announcer import Announcer
from pipeline.delivery.diagnosis import Diagnosis
from pipeline.delivery.errorpolicy import DeadLetter
from pipeline.delivery.health import Condition
from pipeline.delivery.helduploads import HeldUploads
from pipeline.delivery.outcomes import drop_revoked, failed, finish
from pipeline.delivery.outlets import Outlets
from pipeline.delivery.probe import probe
from pipeline.delivery.rounds import Early, Rounds
from pipeline.delivery.steps import Steps
from pipeline.delivery.uploads import wants_upload
from pipeline.delivery.work import Revoked, Work
from pipeline.observability.metrics import LANE_BACKLOG

__all__ = ["MAX_BATCH", "LaneHooks", "TenantLane"]

# A batch fills a customers upload with new leads if it can; two call uploads at most.
MAX_BATCH = 2 * MAX_CALLS_PER_UPLOAD
# A batch that keeps receiving calls stays open up to this many lingers from its first.
MAX_LINGERS = 4


class LaneHooks(Protocol):
    """The replays, as a lane sees them (its health it reads and drives itself)."""

    def held_back(self, tenant_id: str, work: Work) -> bool:
        """A live event a running replay of the tenant takes over (it keeps their order)."""

    async def recover_outage(self, tenant_id: str) -> bool:
        """The portal answers again: start replaying what the outage parked (False: not yet)."""


class TenantLane:
    """Takes a tenant's events in order, batches their call uploads, and acks each event only
    after it was delivered, dead-lettered or put on the invalid topic. While the tenant's
    health (`steps.health`, pipeline/delivery/health.py) is not active, it parks them all."""

    def __init__(self, *, tenant_id: str, steps: Steps, outlets: Outlets, linger: float,
                 buffer: int, hooks: LaneHooks | None = None, probe_interval: float = 300.0,
                 outage_probe_interval: float = 30.0) -> None:
        self.tenant_id = tenant_id
        self.steps = steps
        self.health = steps.health
        self.outlets = outlets
        self.linger = linger
        self.hooks = hooks
        self.probe_interval = probe_interval
        self.outage_probe_interval = outage_probe_interval
        self._last_probe = time.monotonic()
        self.diagnosis = Diagnosis(tenant_id=tenant_id, steps=steps)
        steps.on_denied = self.diagnosis.denied
        steps.on_rejected = self.diagnosis.rejected
        self._queue: asyncio.Queue[Work] = asyncio.Queue(maxsize=buffer)
        self._held = HeldUploads()  # uploads waiting for their recording, or the next batch
        self._put_off_at = 0.0  # when the uploads waiting for the next batch were put off
        self._task: asyncio.Task[None] | None = None
        self._busy = False
        self._last_active = time.monotonic()
        self._rounds = Rounds(steps, self._step, self._failed)
        self._in_flight: set[str] = set()  # the callers of the batch making its leads
        self._back: asyncio.Task[None] | None = None  # that batch's leads, uploads, outcomes
        self._arrived = asyncio.Event()  # set by each submit
        # Pop-ups and statuses leave on arrival, several calls' at once (announcer.py).
        self._announcer = Announcer(lambda work: self._step(self.steps.announce, work))

    @property
    def broken(self) -> DeadLetter | None:
        """What its events are parked with while the tenant is not active (a read-only view
        of its health)."""
        return self.health.dead_letter()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"lane-{self.tenant_id}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def submit(self, work: Work) -> None:
        """Waits while the lane is full: back-pressure on the partition, never a dropped event."""
        self._last_active = time.monotonic()
        await self._queue.put(work)
        self._arrived.set()
        LANE_BACKLOG.inc()

    def idle_since(self, now: float) -> float:
        """Seconds the lane has had nothing to do (0 while it has something, or a key or a
        portal to probe: a broken lane wakes by itself). A deactivated one has nothing: a
        fresh lane reads that from the tenant-state table and parks what comes."""
        if self._busy or not self._queue.empty() or self._held or self.health.probed or (
                self._back is not None and not self._back.done()) or self._announcer.busy:
            return 0.0
        return now - self._last_active

    @property
    def backlog(self) -> int:
        return self._queue.qsize()

    async def _collect(self, wait: float | None = None) -> list[Work]:
        """Events for one call upload, gathered while they keep coming: the batch leaves once
        `linger` seconds pass without one, or `MAX_LINGERS` lingers after its first; none if
        `wait` seconds pass without one. A worker behind on its partitions hands each of 50
        tenants' lanes about 9 calls a second: batches cut one linger after their first call
        carried about 12 calls to an upload (27 this way), at 1.36 requests a call (1.24),
        and requests are most of a worker's CPU. An isolated call still waits one linger.
        Pop-ups and on-call statuses leave on arrival (`_announce_now`): only uploads (and the
        steps before them) linger.

        From a backlog, more: until their possible new leads fill a customers upload, two call
        uploads' worth at most (`MAX_BATCH`). 50 calls hold fewer than 50 new leads, and their
        customers and orders would go in uploads only as full as that: a replay spent two
        general requests (10/s) on every 50 calls however few of them were leads."""
        try:
            # Not `wait_for` alone: with no time to wait it gives up even on a queued event.
            first = self._queue.get_nowait() if not self._queue.empty() else \
                await asyncio.wait_for(self._queue.get(), wait)
        except TimeoutError:
            return []
        LANE_BACKLOG.dec()
        batch = [first]
        leads: set[str] = set()  # the callers whose calls may be new leads
        self._note_lead(first, leads)
        await self._announce_now(first)
        loop = asyncio.get_running_loop()
        last = loop.time()
        closes = last + MAX_LINGERS * self.linger
        while len(batch) < MAX_BATCH and len(leads) < MAX_PER_UPLOAD:
            remaining = min(last + self.linger, closes) - loop.time()
            if (remaining <= 0 or len(batch) >= MAX_CALLS_PER_UPLOAD) and self._queue.empty():
                break  # past a full call upload, only a backlog fills the leads' upload
            try:
                work = self._queue.get_nowait() if not self._queue.empty() else \
                    await asyncio.wait_for(self._queue.get(), remaining)
            except TimeoutError:
                break
            LANE_BACKLOG.dec()
            last = loop.time()
            batch.append(work)
            self._note_lead(work, leads)
            await self._announce_now(work)
        return batch

    def _note_lead(self, work: Work, leads: set[str]) -> None:
        """Adds the work's caller to `leads` if the call may make a new lead (`may_lead`)."""
        if work.plan.phone not in leads and self.steps.may_lead(work.plan):
            leads.add(work.plan.phone)

    async def _announce_now(self, work: Work) -> None:
        """A pop-up or an on-call status is worth something only now: it leaves at once, while
        the batch it joins goes on gathering uploads. Not while the lane is broken (its batch
        parks it), and not for a record a replay holds back."""
        if self.health.stopped or not _urgent(work) or work.prepared:
            return
        if work.start() and not self._held_back(work):
            await self._announcer.start(work)  # `announced` once it is over
        else:
            work.announced = True

    async def _run(self) -> None:
        """Batch after batch; a batch's front (its lookups) runs while the batch before makes
        its leads and uploads, which stay in order."""
        try:
            while True:
                await self._next_or_back()
                await self._turn(await self._collect(self._wait()))
        finally:
            await self._announcer.cancel()
            if self._back is not None and not self._back.done():
                self._back.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._back

    async def _turn(self, batch: list[Work]) -> None:
        """One batch's front now, its back in a task once the batch before is done. Its own
        frame, so that an idle lane holds no finished batch (a worker with calls for 1,000
        tenants held their last batches: 30 KB a tenant)."""
        self._busy = True
        try:
            front = await self._front(batch + self._due())
            if self._back is not None:
                await self._back
            self._in_flight = {w.plan.phone for w in front[0]}
            self._back = asyncio.create_task(self._back_of(*front, put_off=True))
        finally:
            self._busy = False
            self._last_active = time.monotonic()

    async def _next_or_back(self) -> None:
        """With nothing queued, wait for an event or for the batch in flight to finish: what
        that batch holds back (`_held`) sets how long the lane may then wait for events."""
        back = self._back
        if back is None or back.done() or not self._queue.empty():
            return
        self._arrived.clear()
        arrived = asyncio.ensure_future(self._arrived.wait())
        try:
            await asyncio.wait({back, arrived}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            arrived.cancel()

    def _wait(self) -> float | None:
        """How long the lane may wait for an event before it has something to do itself."""
        waits = [max(0.0, (until - self.steps.clock()).total_seconds())
                 for until in self._held.until()]
        if self.health.probed and self.health.now.condition is Condition.OUTAGE:
            # While its portal is down, the lane wakes up to probe it even with no traffic:
            # what the outage parked is replayed only once a probe finds the portal back.
            waits.append(self.outage_probe_interval)
        if self._held.has_put_off:  # calls put off to the next batch wait one linger at most
            waits.append(max(0.0, self._put_off_at + self.linger - time.monotonic()))
        return min(waits) if waits else None

    def _due(self) -> list[Work]:
        """Held uploads whose wait is over (or that a broken lane must park now)."""
        return self._held.due(self.steps.clock(), self.health.stopped)

    def _held_back(self, work: Work) -> bool:
        """While a replay of the tenant runs, its live events wait for the replay, which reads
        on to them: a caller's first call stays the one that makes the lead."""
        if work.replayed or self.hooks is None or not self.hooks.held_back(self.tenant_id, work):
            return False
        work.ack()
        return True

    async def _probe(self) -> None:
        """A broken key is asked again at most once per probe interval, with /api/credentials;
        a portal that was down, more often (nothing is wrong with its key)."""
        if not self.health.probed:  # one field: the whole record is read only when it is
            return
        health = self.health.now
        outage = health.condition is Condition.OUTAGE
        interval = self.outage_probe_interval if outage else self.probe_interval
        if time.monotonic() - self._last_probe < interval:
            return
        self._last_probe = time.monotonic()
        await probe(tenant_id=self.tenant_id, client=self.steps.client, health=self.health,
                    hooks=self.hooks, outage=outage)

    def drop_stale(self) -> int:
        """Held uploads of records whose partition was revoked are dropped unstarted: their
        next owner reads them again from the commit point."""
        return self._held.drop_stale()

    async def deliver(self, batch: list[Work]) -> None:
        """A batch from end to end (`_run` overlaps one batch's front with the one before)."""
        await self._back_of(*await self._front(batch))

    async def _front(self, batch: list[Work]) -> tuple[list[Work], Early]:
        """What may run while the batch before still makes its leads: the probe, the pop-ups,
        and the lookups of callers not in that batch."""
        await self._announcer.settled(batch)  # the pop-ups that left on arrival
        # The probe first: a portal found back starts the replay of what its outage parked,
        # and this very batch's live events must then wait for it too.
        await self._probe()
        batch = [w for w in batch if (w.announced and w.live) or
                 (not w.announced and w.start() and not self._held_back(w))]
        for work in batch:  # pop-ups first, for the whole batch: they are worth only now
            if not self.health.stopped and not work.prepared and not work.announced:
                await self._step(self.steps.announce, work)
        return batch, await self._rounds.look_ahead(batch, self._in_flight)

    async def _back_of(self, batch: list[Work], early: Early, *, put_off: bool = False) -> None:
        """The leads, the call uploads and the outcomes, one batch after another; `put_off`
        where a next batch will come (`_run`), not for one batch alone (`deliver`)."""
        self._in_flight = {w.plan.phone for w in batch}
        try:
            await self._rounds.run(batch, early)
            await self._upload(batch, put_off=put_off)
        finally:
            self._in_flight = set()

    async def _upload(self, batch: list[Work], *, put_off: bool) -> None:
        # What the batch before put off goes first: retailCRM keeps a call's first upload.
        batch = drop_revoked(self._held.put_off_until_next() + batch)
        batch = self._held.hold(batch, self.steps.clock(), self.health.stopped)
        if put_off:
            batch = self._fill_next(batch)
        try:
            await self.steps.upload([w for w in batch if w.broken is None])
        except Exception as exc:  # noqa: BLE001 - no event may vanish with a bug
            for work in batch:
                self._failed(work, exc)
        batch = drop_revoked(batch)
        broken = next((w.broken for w in batch if w.broken is not None), None)
        if broken is not None:
            self.health.broke(broken)  # a no-op if it broke (or was deactivated) before
        if not self.health.stopped:
            # After the batch's CRM steps, before its acks: a committed record's problem was
            # dealt with. It never fails a call (its failures are logged and counted).
            await self.diagnosis.run()
        for work in batch:
            await finish(work, tenant_id=self.tenant_id, outlets=self.outlets,
                         ledger=self.steps.ledger, health=self.health,
                         write_facts=self.steps.write_now)
            # A batch's outcomes in one go held the loop: other lanes' requests and syncs
            # waited meanwhile, and their budget went unspent.
            await asyncio.sleep(0)

    def _fill_next(self, batch: list[Work]) -> list[Work]:
        """The works to upload now. A batch past one call upload was cut from a backlog where
        its new leads fill their upload (`_collect`), not where its calls do: its calls past
        its last full call upload go with the next batch's upload instead, if one comes
        within a linger (`_wait`). (Not a smaller batch's: those are all the lane had.)"""
        if self.health.stopped:
            return batch
        uploads = [w for w in batch if wants_upload(w)]
        extra = len(uploads) % MAX_CALLS_PER_UPLOAD
        if len(uploads) <= MAX_CALLS_PER_UPLOAD or not extra:
            return batch
        later = uploads[-extra:]
        if not self._held.has_put_off:
            self._put_off_at = time.monotonic()
        self._held.put_off(later)
        gone = {id(w) for w in later}
        return [w for w in batch if id(w) not in gone]

    async def _step(self, step: Callable[[Work], Awaitable[None]], work: Work) -> None:
        if work.revoked:
            return
        try:
            await step(work)
        except Revoked:
            work.revoke()
        except Exception as exc:  # noqa: BLE001 - no event may vanish with a bug
            self._failed(work, exc)

    def _failed(self, work: Work, exc: Exception) -> None:
        failed(work, exc, tenant_id=self.tenant_id, health=self.health)


def _urgent(work: Work) -> bool:
    """A pop-up or an on-call status: it leaves at once, it does not wait for an upload."""
    return bool(work.plan.popups) or work.plan.status_change is not None

