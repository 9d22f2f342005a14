"""Carrying out one call's plan against retailCRM: each step once, however often it is delivered."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import random
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import NamedTuple, TypeVar

from cachetools import TTLCache

from pipeline.config import CRMSettings
from pipeline.crm import errors as e
from pipeline.crm.client import RetailCRMClient
from pipeline.crm.models import Customer, ManagerLookup, TelephonyManager
from pipeline.crm.session import HALT, Halted
from pipeline.delivery import callback, outcome, popups, uploads
from pipeline.delivery.errorpolicy import DeadLetter, Reason, Reject, Retry, decide, key_refused
from pipeline.delivery.health import TenantHealth
from pipeline.delivery.ledger import CallerKey, Ledger
from pipeline.delivery.planning import CallPlan, is_new_lead
from pipeline.delivery.uploads import CONFLICTING_RECORD, upload_digest
from pipeline.delivery.work import Lead, Revoked, StepFailed, Work, done_tag
from pipeline.observability.metrics import RETRIES

__all__ = ["KnownCaller", "Steps", "at_most_once", "caller_key", "or_zero"]

T = TypeVar("T")


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
        self.known_callers: TTLCache[str, KnownCaller] = TTLCache(maxsize=10_000, ttl=600)
        # Optional methods the key was refused (BATCH_METHODS): done another way from then on.
        self.unavailable: set[str] = set()
        self.on_denied: Callable[[str], None] | None = None
        # Told of every refused request (pipeline/delivery/diagnosis.py looks for a refused shop).
        self.on_rejected: Callable[[str, e.CRMRejectedError], None] | None = None

    def _stopped(self) -> bool:
        return self.health.dead_letter() is not None

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
            stopped = self.health.dead_letter()
            if stopped is not None:
                # Broken, down or deactivated meanwhile (another batch of the lane found it):
                # parked as that found it, without asking a dead key or a downed portal again.
                raise StepFailed(stopped)
            token = HALT.set(self._stopped)
            try:
                return await fn()
            except Halted:
                # The tenant stopped while this waited for its pace: parked as it stopped.
                halted = self.health.dead_letter()
                if halted is None:  # cannot be: HALT asked the same, nothing ran in between
                    raise
                raise StepFailed(halted) from None
            except e.RetailCRMError as exc:
                if isinstance(exc, e.CRMRejectedError) and self.on_rejected is not None:
                    self.on_rejected(method, exc)
                action = decide(exc, attempt=attempt, max_attempts=self.settings.max_attempts,
                                base=self.settings.backoff_base_seconds,
                                cap=self.settings.backoff_max_seconds, rand=self.rand)
            finally:
                HALT.reset(token)
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
        """Run a step; a rejection or a parked method is the step's outcome, added to the
        work's (None returned); a broken integration re-raises (the whole batch stops)."""
        try:
            return await self.call(method, fn, work=work)
        except StepFailed as exc:
            if isinstance(exc.action, DeadLetter) and exc.action.broken:
                raise
            work.add(outcome.failed(step, method, exc.action))
            return None

    # -- per call ------------------------------------------------------------------------------

    async def announce(self, work: Work) -> None:
        """Pop-ups and the on-call status: worth something only now, so they leave first
        (pipeline/delivery/popups.py)."""
        await popups.announce(self, work)

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
                work.add(outcome.undeliverable(CONFLICTING_RECORD))  # no step of it at all
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
        customer_id = self._known_customer(plan)
        if customer_id is None:
            return None
        return ManagerLookup(customer=Customer(id=customer_id))

    def _known_customer(self, plan: CallPlan) -> int | None:
        """The customer the ledger knows the portal holds for the caller, if any."""
        customer_id = self.ledger.caller(plan.tenant_id, self.caller(plan)).get("customer_id")
        return customer_id if isinstance(customer_id, int) else None

    def may_lead(self, plan: CallPlan) -> bool:
        """Whether the call may make a new lead, before its lookup: it would make a customer
        or an order, and its caller is not known to have a customer (the lookup decides)."""
        if (plan.customer is None and plan.order is None) or plan.phone in self.known_callers:
            return False
        return self._known_customer(plan) is None

    def caller(self, plan: CallPlan) -> CallerKey:
        return caller_key(plan.tenant_id, self.client.base_url, plan.phone)

    def write_now(self, plan: CallPlan) -> None:
        """The call's entry and its caller's go to the table: when its event settles
        (`outcomes.finish`), and at once where a task was made, found or changed (retailCRM
        does not de-duplicate tasks), so a partition's next owner reads them instead of
        searching for the task, and a caller's open task is known there."""
        self.ledger.write((plan.tenant_id, plan.call_id), (plan.tenant_id, self.caller(plan)))

    def remember_caller(self, plan: CallPlan, customer_id: int) -> None:
        key = self.caller(plan)
        if self.ledger.caller(plan.tenant_id, key).get("customer_id") != customer_id:
            self.ledger.record_caller(plan.tenant_id, key, customer_id=customer_id)

    async def _lookup(self, plan: CallPlan) -> ManagerLookup:
        cached = self.known_callers.get(plan.phone)
        if cached is not None:
            return cached.lookup()
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
        self.known_callers[plan.phone] = KnownCaller(
            lookup.customer.id, lookup.manager.id if lookup.manager is not None else None)
        self.remember_caller(plan, lookup.customer.id)

    # -- batched -------------------------------------------------------------------------------

    async def upload(self, works: list[Work]) -> None:
        """Calls not uploaded yet, in batches (pipeline/delivery/uploads.py)."""
        await uploads.upload(self, works)


class KnownCaller(NamedTuple):
    """Of a lookup that found the caller's customer, what a later call of theirs reads: two
    numbers held, not the answer's models (a lane may know thousands of callers)."""

    customer_id: int
    manager_id: int | None

    def lookup(self) -> ManagerLookup:
        return ManagerLookup(
            manager=None if self.manager_id is None else TelephonyManager(id=self.manager_id),
            customer=Customer(id=self.customer_id, managerId=self.manager_id))


def caller_key(tenant_id: str, portal: str, phone: str) -> CallerKey:
    """The ledger's entry for what a portal is known to hold for a caller: under a digest,
    not the number (the ledger's changelog is no place for personal data in clear); `#` is in
    no call id. A tenant moved to another portal knows none of its callers there."""
    digest = hashlib.sha256(f"{tenant_id}|{portal}|{phone}".encode()).hexdigest()[:32]
    return CallerKey(f"#caller/{digest}")


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
