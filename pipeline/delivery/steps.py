"""Carrying out one call's plan against retailCRM: each step once, however often it is delivered."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import random
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from cachetools import TTLCache

from pipeline.config import CRMSettings
from pipeline.crm import errors as e
from pipeline.crm.client import MAX_CALLS_PER_UPLOAD, RetailCRMClient
from pipeline.crm.models import Customer, ManagerLookup
from pipeline.delivery import callback
from pipeline.delivery.errorpolicy import DeadLetter, Reason, Reject, Retry, decide, key_refused
from pipeline.delivery.health import TenantHealth
from pipeline.delivery.ledger import (
    CallerKey,
    CallFacts,
    DoneFlag,
    Ledger,
    done_flag,
    popup_flag,
    status_flag,
)
from pipeline.delivery.planning import CallPlan, is_new_lead
from pipeline.observability.metrics import BATCH_SIZE, POPUPS_SKIPPED, RETRIES, STATUS_SYNC
from pipeline.streams.offsets import Lease
from schemas.call_event import CallEvent
from schemas.crm import CustomerRef

__all__ = ["Lead", "Revoked", "SourceRef", "StepFailed", "Steps", "Work", "at_most_once",
           "caller_key", "finished", "or_zero"]

T = TypeVar("T")
LATE_RECORDING = (
    "late_recording: the call was uploaded without a recording, and retailCRM keeps a call's "
    "first upload (calls are de-duplicated by externalId and cannot be edited); publish a "
    "call's ended record once its recording URL is known")


CONFLICTING_RECORD = (
    "conflicting_record: another record of this call was uploaded first with other content; "
    "retailCRM keeps a call's first upload (calls are de-duplicated by externalId and cannot "
    "be edited)")


def upload_digest(work: Work) -> str:
    """Of the record as the producer sent it (not of the payload, which follows the tenant's
    settings): the same record delivered again is no conflict. Without the recording, which
    may come in a later record (`recording_wait_seconds`, else `late_recording`)."""
    body = work.event.model_dump_json(exclude={"recording_url"})
    return hashlib.sha256(body.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class SourceRef:
    topic: str
    partition: int
    offset: int

    def __str__(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


@dataclass
class Work:
    """One call event on its way through a tenant lane; `ack` runs once its outcome is durable."""

    event: CallEvent
    plan: CallPlan
    raw: bytes
    key: bytes | None
    source: SourceRef
    ack: Callable[[], object]
    rejected: list[str] = field(default_factory=list)
    parked: list[DeadLetter] = field(default_factory=list)
    broken: DeadLetter | None = None
    # Nothing the CRM can take, for a reason of its own: the event goes to the invalid topic.
    undeliverable: str | None = None
    prepared: bool = False  # its per-call steps ran; only its upload is left (a held upload)
    announced: bool = False  # its pop-ups left on arrival, while its batch gathered uploads
    # The live consumer's claim on the record; None for replayed work (the replay tracks it).
    lease: Lease | None = None
    replayed: bool = False
    # Its partition moved to another owner mid-way: dropped unsettled, read again there.
    revoked: bool = False

    @property
    def live(self) -> bool:
        """Still this worker's to deliver: no CRM request is made for it otherwise."""
        return self.lease is None or self.lease.live

    def start(self) -> bool:
        """False if the record's partition moved to another owner: drop the work unstarted."""
        if self.lease is None or self.lease.start():
            return True
        self.lease.abandon()
        return False


@dataclass
class Lead:
    """A call whose lookup is done, on its way through its batch's customers, orders and tasks
    (pipeline/delivery/leads.py)."""

    work: Work
    facts: CallFacts  # the ledger's, as they were when the call began
    lookup: ManagerLookup
    new_lead: bool
    seen: bool  # delivered before: what it makes may exist although the ledger missed it
    customer: CustomerRef | None = None

    @property
    def decided(self) -> bool:
        """Its lead decision was recorded now (not read from an earlier delivery)."""
        return not self.seen


class Revoked(Exception):
    """The record's partition was revoked while its work ran. The work stops before its next
    CRM request, so that two owners never write for one record at once: the next owner reads
    it again from the commit point and finds in the ledger what was done already."""


class StepFailed(Exception):
    def __init__(self, action: DeadLetter | Reject) -> None:
        super().__init__(action.reason)
        self.action = action


def done_tag(work: Work) -> DoneFlag:
    """Per stage: the `ended` record of a call has work left when its `answered` is done."""
    return done_flag(work.event.stage)


def finished(ledger: Ledger, work: Work) -> None:
    """Note a record whose every step succeeded, so a redelivery costs no request at all."""
    if work.broken is None and not work.rejected and not work.parked:
        ledger.mark(work.plan.tenant_id, work.plan.call_id, done_tag(work))


class Steps:
    """The CRM steps of a call, each guarded by the error policy and recorded in the ledger."""

    def __init__(self, *, client: RetailCRMClient, ledger: Ledger, settings: CRMSettings,
                 health: TenantHealth, clock: Callable[[], datetime],
                 rand: random.Random | None = None) -> None:
        self.client = client
        # The tenant's health: the methods its key was refused are parked without asking
        # again until the key changes.
        self.health = health
        self.ledger = ledger
        self.settings = settings
        self.clock = clock
        self.rand = rand or random.Random()  # noqa: S311 - jitter, not cryptography
        self.known_callers: TTLCache[str, ManagerLookup] = TTLCache(maxsize=10_000, ttl=600)
        # Optional methods the key was refused (BATCH_METHODS): done another way from then on.
        self.unavailable: set[str] = set()
        self.on_denied: Callable[[str], None] | None = None
        # Told of every refused request (pipeline/delivery/diagnosis.py looks for a refused shop).
        self.on_rejected: Callable[[str, e.CRMRejectedError], None] | None = None

    @property
    def denied(self) -> frozenset[str]:
        """The methods the key was refused (read from the tenant's health)."""
        return frozenset(self.health.now.denied)

    async def call(self, method: str, fn: Callable[[], Awaitable[T]], *,
                   deadline: datetime | None = None, work: Work | None = None,
                   optional: bool = False) -> T:
        """`fn` under the error policy. An `optional` method the key is refused is noted in
        `unavailable` (the caller does without it), not as the tenant's denied method."""
        if self.health.is_denied(method):
            if self.on_denied is not None:  # every refusal: a recurrence for diagnosis
                self.on_denied(method)
            raise StepFailed(DeadLetter(reason=Reason.ACCESS_DENIED, broken=False,
                                        method=method))
        attempt = 0
        while True:
            attempt += 1
            if work is not None and not work.live:
                raise Revoked(work.source)
            try:
                return await fn()
            except e.RetailCRMError as exc:
                if isinstance(exc, e.CRMRejectedError) and self.on_rejected is not None:
                    self.on_rejected(method, exc)
                action = decide(exc, attempt=attempt, max_attempts=self.settings.max_attempts,
                                base=self.settings.backoff_base_seconds,
                                cap=self.settings.backoff_max_seconds, rand=self.rand)
            if isinstance(action, DeadLetter) and action.denied and optional:
                self.unavailable.add(method)
                raise StepFailed(action)
            if isinstance(action, DeadLetter) and action.denied:
                self.health.denied(action.method or method)
                if self.on_denied is not None:
                    self.on_denied(action.method or method)
            if isinstance(action, DeadLetter) and action.exhausted:
                action = await self._portal_or_request(action)
            if not isinstance(action, Retry):
                raise StepFailed(action)
            if deadline is not None and self.clock().timestamp() + action.delay > \
                    deadline.timestamp():
                raise StepFailed(Reject(reason="stale"))
            RETRIES.labels(method).inc()
            await asyncio.sleep(action.delay)

    async def _portal_or_request(self, exhausted: DeadLetter) -> DeadLetter:
        """Retries ran out. One cheap question tells a portal that is down (the whole tenant
        waits, see `DeadLetter.outage`) from one request that keeps failing (only this step is
        parked, so a poison event cannot stall its tenant)."""
        try:
            await self.client.credentials()
        except e.RetailCRMError as exc:
            if isinstance(exc, e.CRMAuthorizationError):  # the key broke meanwhile
                return DeadLetter(reason=key_refused(exc), broken=True, method=exc.method)
            return dataclasses.replace(exhausted, broken=True)
        return exhausted

    async def guard(self, work: Work, step: str, method: str,
                     fn: Callable[[], Awaitable[T]]) -> T | None:
        """Run a step; a rejection or a parked method is noted on the work, broken re-raises."""
        try:
            return await self.call(method, fn, work=work)
        except StepFailed as failed:
            action = failed.action
            if isinstance(action, DeadLetter):
                if action.broken:
                    raise
                work.parked.append(DeadLetter(reason=f"{step}:{action.reason}",
                                              broken=False, method=action.method or method))
            else:
                work.rejected.append(f"{step}: {action.reason}")
            return None

    # -- per call ------------------------------------------------------------------------------

    async def announce(self, work: Work) -> None:
        """Pop-ups and the on-call status: worth something only now, so they leave first."""
        plan = work.plan
        if not plan.popups and plan.status_change is None:
            return
        facts = self.ledger.facts(plan.tenant_id, plan.call_id)
        if facts.get(done_tag(work)):
            return
        await self._popups(work, facts)
        await self._status(work, facts)

    async def begin(self, work: Work) -> Lead | None:
        """A call's steps up to knowing whether it is a new lead (its lookup); the rest are
        its batch's (pipeline/delivery/leads.py), which holds no two calls of one caller."""
        plan = work.plan
        facts = self.ledger.facts(plan.tenant_id, plan.call_id)
        if plan.upload is not None:  # an ended record: the call's first one wins
            claimed, digest = facts.get("record"), upload_digest(work)
            if claimed is None:
                self.ledger.record(plan.tenant_id, plan.call_id, record=digest)
            elif claimed != digest:
                work.undeliverable = CONFLICTING_RECORD  # no step of it: not a task, nothing
                return None
        if facts.get(done_tag(work)):  # delivered before, every step: nothing to ask the CRM
            return None
        await callback.complete_open_task(self, work, facts)
        if not plan.lookup:
            return None
        lookup = self._known_caller(plan)
        if lookup is None:
            lookup = await self.guard(work, "lookup", "/api/telephony/manager",
                                      lambda: self._lookup(plan))
        if lookup is None:
            return None
        seen = "lead" in facts
        new_lead = bool(facts["lead"]) if seen else is_new_lead(lookup)
        if not seen:
            self.ledger.record(plan.tenant_id, plan.call_id, lead=new_lead)
        return Lead(work=work, facts=facts, lookup=lookup, new_lead=new_lead, seen=seen)

    def _known_caller(self, plan: CallPlan) -> ManagerLookup | None:
        """A caller the CRM has a customer for, known from an earlier call (the ledger keeps
        it, so a restart does not forget): no lookup needed — unless the call makes a task,
        whose performer is the customer's manager as the CRM has it now."""
        if plan.task is not None:
            return None
        known = self.ledger.caller(plan.tenant_id, self.caller(plan))
        customer_id = known.get("customer_id")
        if not isinstance(customer_id, int):
            return None
        return ManagerLookup(customer=Customer(id=customer_id))

    def caller(self, plan: CallPlan) -> CallerKey:
        return caller_key(plan.tenant_id, self.client.base_url, plan.phone)

    def remember_caller(self, plan: CallPlan, customer_id: int) -> None:
        key = self.caller(plan)
        if self.ledger.caller(plan.tenant_id, key).get("customer_id") != customer_id:
            self.ledger.record_caller(plan.tenant_id, key, customer_id=customer_id)

    async def _lookup(self, plan: CallPlan) -> ManagerLookup:
        cached = self.known_callers.get(plan.phone)
        if cached is not None:
            return cached
        lookup = await self.client.telephony_manager(plan.phone, details=True,
                                                     ignore_status=True)
        if lookup.customer is not None:
            self.known_caller(plan, lookup)
        return lookup

    def known_caller(self, plan: CallPlan, lookup: ManagerLookup) -> None:
        """The CRM has a customer for the caller (found, or made now): a later call of theirs
        asks no lookup for the next 10 minutes (a task's performer is the customer's manager
        as it was then), and none at all where it makes no task (the ledger keeps it)."""
        if lookup.customer is None:
            return
        self.known_callers[plan.phone] = lookup
        self.remember_caller(plan, lookup.customer.id)

    async def _popups(self, work: Work, facts: CallFacts) -> None:
        for popup in work.plan.popups:
            tag = popup_flag(popup.stage)
            if facts.get(tag):
                continue
            if self.clock() > popup.not_after:
                POPUPS_SKIPPED.labels("stale").inc()
                continue
            try:
                await self.call("/api/telephony/call/event",
                                lambda p=popup.payload: self.client.call_event(p),  # type: ignore[misc]
                                deadline=popup.not_after, work=work)
            except StepFailed as failed:
                if isinstance(failed.action, DeadLetter) and failed.action.broken:
                    raise
                # A pop-up is worth nothing later: it is counted, never parked or replayed.
                POPUPS_SKIPPED.labels(failed.action.reason.split(":")[0]).inc()
                continue
            self.ledger.mark(work.plan.tenant_id, work.plan.call_id, tag)

    async def _status(self, work: Work, facts: CallFacts) -> None:
        """Busy while on the call; back to what it was after — unless the user changed it."""
        change = work.plan.status_change
        if change is None or self.clock() > change.not_after:
            return
        plan = work.plan
        if facts.get(status_flag(change.action)):
            return
        try:
            user = await self.call("/api/users/{id}", lambda: self.client.user(change.user_id),
                                   deadline=change.not_after, work=work)
            if change.action == "busy":
                if user.status != "busy":
                    await self.call("/api/users/{id}/status", lambda: self.client.set_user_status(
                        change.user_id, "busy"), deadline=change.not_after, work=work)
                    STATUS_SYNC.labels("busy").inc()
                self.ledger.record(plan.tenant_id, plan.call_id, status_busy=True,
                                   status_before=user.status if user.status != "busy" else None)
                return
            before = facts.get("status_before")
            if facts.get("status_busy") and before and user.status == "busy":
                await self.call("/api/users/{id}/status", lambda: self.client.set_user_status(
                    change.user_id, before), deadline=change.not_after, work=work)
                STATUS_SYNC.labels("restore").inc()
            self.ledger.record(plan.tenant_id, plan.call_id, status_restore=True)
        except StepFailed as failed:
            if isinstance(failed.action, DeadLetter) and failed.action.broken:
                raise
            # A status is worth nothing later, like a pop-up: counted, never parked.
            POPUPS_SKIPPED.labels("status:" + failed.action.reason.split(":")[0][:30]).inc()

    # -- batched -------------------------------------------------------------------------------

    async def upload(self, works: list[Work]) -> None:
        """Calls not uploaded yet, in batches. A call's first record wins (retailCRM keeps a
        call's first upload); a later record of it with other content is not dropped silently
        but goes to the invalid topic (`late_recording`, `conflicting_record`)."""
        pending: dict[str, Work] = {}
        for w in works:
            if w.plan.upload is None or w.broken is not None or w.undeliverable is not None:
                continue
            if not w.live:
                w.revoked = True
                continue
            facts = self.ledger.facts(w.plan.tenant_id, w.plan.call_id)
            digest = upload_digest(w)
            first = pending.get(w.plan.call_id)
            recording = _recording(w)
            if first is not None:
                if upload_digest(first) != digest:
                    w.undeliverable = CONFLICTING_RECORD
                elif recording != _recording(first):
                    w.undeliverable = LATE_RECORDING if not _recording(first) \
                        else CONFLICTING_RECORD
            elif not (facts.get("call") or facts.get(done_tag(w))):
                pending[w.plan.call_id] = w
            elif recording and facts.get("recorded") is False:
                w.undeliverable = LATE_RECORDING
            elif facts.get("upload_digest") not in (None, digest) or (
                    recording and facts.get("recording") not in (None, recording)):
                w.undeliverable = CONFLICTING_RECORD
        for chunk in _chunks(list(pending.values()), MAX_CALLS_PER_UPLOAD):
            await self._upload(chunk)

    async def _upload(self, chunk: list[Work]) -> None:
        calls = [w.plan.upload for w in chunk if w.plan.upload is not None]
        try:
            await self.call("/api/telephony/calls/upload", lambda: self.client.upload_calls(calls))
        except StepFailed as failed:
            action = failed.action
            if isinstance(action, DeadLetter):
                for w in chunk:
                    if action.broken:
                        w.broken = action
                    else:
                        w.parked.append(DeadLetter(reason=f"upload:{action.reason}",
                                                   broken=False, method=action.method))
            elif len(chunk) > 1:  # find the call the CRM refused: upload one by one
                for w in chunk:
                    await self._upload([w])
            else:
                chunk[0].rejected.append(f"upload: {action.reason}")
            return
        BATCH_SIZE.observe(len(chunk))
        for w in chunk:
            self.ledger.record(w.plan.tenant_id, w.plan.call_id, call=True,
                               upload_digest=upload_digest(w), recording=_recording(w),
                               recorded=w.plan.upload is not None and bool(
                                   w.plan.upload.recordUrl))


def caller_key(tenant_id: str, portal: str, phone: str) -> CallerKey:
    """The ledger's entry for what a portal is known to hold for a caller: under a digest,
    not the number (the ledger's changelog is no place for personal data in clear); `#` is in
    no call id. A tenant moved to another portal knows none of its callers there."""
    digest = hashlib.sha256(f"{tenant_id}|{portal}|{phone}".encode()).hexdigest()[:32]
    return CallerKey(f"#caller/{digest}")


def _recording(work: Work) -> str:
    """The uploaded recording, as a short digest ("" for none): a later record of the call
    that brings another one is a conflict, not a silent drop."""
    url = work.plan.upload.recordUrl if work.plan.upload is not None else None
    return hashlib.sha256(str(url).encode()).hexdigest()[:16] if url else ""


def at_most_once(create: Callable[[], Awaitable[int]], find: Callable[[], Awaitable[int | None]]
                 ) -> Callable[[], Awaitable[int]]:
    """A create for `Steps.call`: its first try creates; every later try first looks for what
    the first may have made, since a create whose answer was lost (a timeout, a 5xx after the
    write, a dropped connection) may well have been carried out."""
    tried = False

    async def attempt() -> int:
        nonlocal tried
        if tried:
            found = await find()
            if found is not None:
                return found
        tried = True
        return await create()

    return attempt


async def or_zero(find: Callable[[], Awaitable[int | None]]) -> int:
    """A look-up for `guard`, whose None means the step failed: 0 for "not there"."""
    return await find() or 0


def _chunks(items: list[Work], size: int) -> Iterator[list[Work]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
