"""A lane's batch of calls after their lookups: the customers and orders of new leads (up to 50
to a request where the key reaches customers/upload and orders/upload, one create each where it
does not), then the tasks of missed calls (tasks.py) — each step once, however often a call is
delivered."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from functools import partial
from typing import Any

from pipeline.crm import errors as e
from pipeline.crm.client import MAX_PER_UPLOAD
from pipeline.crm.models import Customer, ManagerLookup, TelephonyManager, UploadResult
from pipeline.delivery.errorpolicy import DeadLetter
from pipeline.delivery.planning import order_for
from pipeline.delivery.steps import Steps, at_most_once, or_zero
from pipeline.delivery.tasks import Tasks
from pipeline.delivery.work import Each, Lead, StepFailed, for_lead
from pipeline.observability.metrics import LEAD_BATCH_SIZE
from schemas.crm import CustomerPayload, CustomerRef, OrderPayload

__all__ = ["Leads"]


class Leads:
    """The steps of a batch's leads, in phases: every customer, then every order, then every
    task (a task names its customer). The batch holds no two calls of one caller (the lane
    makes rounds): each call's lookup saw what the calls before it made. A broken integration
    raises (StepFailed, broken): the lane parks the whole batch."""

    def __init__(self, steps: Steps, each: Each) -> None:
        self.steps = steps
        self.each = each

    async def run(self, leads: list[Lead]) -> None:
        made = [(lead.work.plan.tenant_id, lead.work.plan.call_id) for lead in leads
                if lead.decided and lead.new_lead]
        if made:
            # Durable before a customer is made: after a crash the lookup would find that
            # customer and take the call for a known caller's, losing its order.
            await self.steps.ledger.sync(*made)
        await self._customers(leads)
        await self._orders(leads)
        await Tasks(self.steps, self.each).run(leads)

    # -- customers -----------------------------------------------------------------------------

    async def _customers(self, leads: list[Lead]) -> None:
        todo: list[Lead] = []
        for lead in leads:
            customer = lead.work.plan.customer
            if lead.lookup.customer is not None:
                lead.customer = CustomerRef(id=lead.lookup.customer.id)
            elif lead.facts.get("customer_id"):
                lead.customer = CustomerRef(id=int(lead.facts["customer_id"]))
            elif customer is not None and lead.new_lead and customer.externalId is not None:
                todo.append(lead)
        await self._batched(todo, "customer", "/api/customers/upload",
                            send=self._upload_customers, made=self._customer_made,
                            one=self._one_customer)

    async def _upload_customers(self, chunk: list[Lead]) -> UploadResult:
        payloads = [p for p in map(_customer_payload, chunk) if p is not None]
        return await self.steps.client.upload_customers(payloads, site=chunk[0].work.plan.site)

    def _customer_made(self, lead: Lead, customer_id: int,
                       existing: Customer | None = None) -> None:
        plan = lead.work.plan
        self.steps.ledger.record(plan.tenant_id, plan.call_id, customer_id=customer_id)
        lead.customer = CustomerRef(id=customer_id)
        payload = plan.customer
        manager = existing.managerId if existing is not None else \
            payload.managerId if payload is not None else None
        # What telephony/manager would answer now, as a lookup that found the customer is kept.
        self.steps.known_caller(plan, ManagerLookup(
            manager=TelephonyManager(id=manager) if manager else None,
            customer=Customer(id=customer_id, managerId=manager)))

    async def _one_customer(self, lead: Lead, seen: bool) -> None:
        """One create (after a look for it where an earlier try may have made it)."""
        work, payload = lead.work, _customer_payload(lead)
        if payload is None or payload.externalId is None:
            return
        external_id = payload.externalId
        existing: Customer | None = None
        if seen:
            existing = await self.steps.guard(
                work, "customer", "/api/customers/{externalId}",
                lambda: self._customer_or_none(external_id, work.plan.site))
        if existing is not None:
            self._customer_made(lead, existing.id, existing)
            return

        async def find() -> int | None:
            found = await self._customer_or_none(external_id, work.plan.site)
            return found.id if found is not None else None

        customer_id = await self.steps.guard(
            work, "customer", "/api/customers/create", at_most_once(
                lambda: self.steps.client.create_customer(payload, site=work.plan.site), find))
        if customer_id is not None:
            self._customer_made(lead, customer_id)

    async def _customer_or_none(self, external_id: str, site: str) -> Customer | None:
        """The customer made under this external id in the call's shop (a key that sees several
        shops must name it)."""
        try:
            return await self.steps.client.customer(external_id, site=site)
        except e.NotFound:
            return None

    # -- orders --------------------------------------------------------------------------------

    async def _orders(self, leads: list[Lead]) -> None:
        todo = [lead for lead in leads if not lead.work.revoked and not lead.facts.get("order")
                and _order_payload(lead) is not None]
        await self._batched(todo, "order", "/api/orders/upload", send=self._upload_orders,
                            made=self._order_made, one=self._one_order)

    async def _upload_orders(self, chunk: list[Lead]) -> UploadResult:
        payloads = [p for p in map(_order_payload, chunk) if p is not None]
        return await self.steps.client.upload_orders(payloads, site=chunk[0].work.plan.site)

    def _order_made(self, lead: Lead, order_id: int) -> None:
        plan = lead.work.plan
        self.steps.ledger.record(plan.tenant_id, plan.call_id, order=order_id)

    async def _one_order(self, lead: Lead, seen: bool) -> None:
        work, order = lead.work, _order_payload(lead)
        if order is None or order.externalId is None:
            return
        external_id = order.externalId

        async def find() -> int | None:
            found = await self.steps.client.orders(filter={"externalIds": [external_id]},
                                                   limit=20)
            return found.orders[0].id if found.orders else None

        async def create() -> int:
            return (await self.steps.client.create_order(order, site=work.plan.site)).id

        if seen:
            existing = await self.steps.guard(work, "order", "/api/orders",
                                              lambda: or_zero(find))
            if existing is None:
                return
            if existing:
                self._order_made(lead, existing)
                return
        created = await self.steps.guard(work, "order", "/api/orders/create",
                                         at_most_once(create, find))
        if created is not None:
            self._order_made(lead, created)

    # -- one request for many, where the key has it ----------------------------------------------

    async def _batched(self, todo: list[Lead], step: str, method: str, *,
                       send: Callable[[list[Lead]], Awaitable[UploadResult]],
                       made: Callable[[Lead, int], None],
                       one: Callable[[Lead, bool], Awaitable[None]]) -> None:
        """Each lead's `step` made: `seen` ones (delivered before, maybe made then) one by one,
        looking first; the rest in uploads of up to 50 if there are two or more and the key
        reaches `method`. What an upload did not make goes one by one too, looking first (an
        item may have failed for being there already, from a try whose answer was lost), so a
        refused item gets its own reason and parks or rejects only its own call."""
        batch: list[Lead] = []
        for lead in todo:
            if not lead.work.live:
                lead.work.revoke()
            elif lead.seen:
                await self._one(one, lead, seen=True)
            else:
                batch.append(lead)
        if len(batch) < 2 or method in self.steps.unavailable:
            for lead in batch:
                await self._one(one, lead, seen=False)
            return
        for chunk in _chunks(batch, MAX_PER_UPLOAD):
            result = UploadResult()
            look = True

            async def attempt(chunk: list[Lead] = chunk) -> UploadResult:
                # Each try sends only the calls still this worker's: a record whose partition
                # moved is its next owner's to make (it stops here, unsettled, one by one).
                live = [lead for lead in chunk if lead.work.live]
                return await send(live) if live else UploadResult()

            try:
                result = await self.steps.call(method, attempt, optional=True)
                LEAD_BATCH_SIZE.labels(step).observe(len(chunk))
            except StepFailed as exc:
                action = exc.action
                if isinstance(action, DeadLetter) and action.broken:
                    raise
                # The key lacks the method (nothing was made), or the upload kept failing.
                look = not (isinstance(action, DeadLetter) and action.denied)
            for lead in chunk:
                made_id = result.uploaded.get(_external_id(lead, step))
                if made_id is not None:
                    made(lead, made_id)
                else:
                    await self._one(one, lead, seen=look)

    async def _one(self, one: Callable[[Lead, bool], Awaitable[None]], lead: Lead, *,
                   seen: bool) -> None:
        await for_lead(self.each, lead, partial(one, lead, seen))


def _customer_payload(lead: Lead) -> CustomerPayload | None:
    return lead.work.plan.customer


def _order_payload(lead: Lead) -> OrderPayload | None:
    order = order_for(lead.work.plan, new_lead=lead.new_lead, customer=lead.customer)
    return order if order is not None and order.externalId is not None else None


def _external_id(lead: Lead, step: str) -> str:
    payload: Any = _customer_payload(lead) if step == "customer" else _order_payload(lead)
    return str(payload.externalId) if payload is not None else ""


def _chunks(items: list[Lead], size: int) -> Iterator[list[Lead]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
