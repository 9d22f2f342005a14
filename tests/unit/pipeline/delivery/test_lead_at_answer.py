"""Option lead.at_answer: the answered record makes a new caller's customer and order, once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pipeline.delivery.planning import plan_call
from pipeline.devtools.crmdouble.server import CRMDouble
from pipeline.devtools.crmdouble.state import Portal
from schemas import CallEvent, EmployeeLink, EmployeeMapping, IntegrationConfig
from tests.crmlane import Crash, CrashableLedger, enable_telephony, quick_lane, work_of
from tests.unit.pipeline.fakes import Outlets

NOW = datetime.now(UTC).replace(microsecond=0)
PHONE = "+380501234567"
MAPPING = EmployeeMapping(tenant_id="acme", senior_manager_id=28,
                          employees={"emp-1": EmployeeLink(crm_user_id=27, extension="101")})
WRITES = ("create_customer", "create_order", "upload_customers", "upload_orders")


def config(portal_url: str = "http://127.0.0.1:1/acme", *, at_answer: bool = True,
           **options: Any) -> IntegrationConfig:
    return IntegrationConfig.model_validate({
        "tenant_id": "acme", "portal_url": portal_url, "admin_email": "admin@acme.example.com",
        "site_code": "main", "api_key": "acme-key", "timezone": "Europe/Kyiv",
        "options": {"lead": {"at_answer": at_answer}, **options}})


def record(call_id: str, stage: str, **changes: Any) -> CallEvent:
    """A call's record; `answered` ones are in progress, `ended` ones answered unless told."""
    base: dict[str, Any] = {
        "call_id": call_id, "tenant_id": "acme", "stage": stage,
        "started_at": (NOW - timedelta(minutes=5)).isoformat(), "direction": "in",
        "client_phone": PHONE, "tracking_number": "+380443334400",
        "employee": {"id": "emp-1", "extension": "101"}, "wait_seconds": 5,
        "status": "in_progress" if stage == "answered" else "answered",
        "talk_seconds": 0 if stage == "answered" else 40,
        "utm": {"source": "google", "medium": "cpc"}}
    return CallEvent.model_validate({**base, **changes})


# -- planning ---------------------------------------------------------------------------------

def test_the_answered_record_plans_the_lead_only_with_the_option() -> None:
    answered, ended = record("c1", "answered"), record("c1", "ended")
    at_answer = plan_call(answered, config(), MAPPING)
    at_end = plan_call(ended, config(), MAPPING)
    assert at_answer.lookup and at_answer.upload is None and at_answer.task is None
    # The same objects by the same externalIds: whichever record makes them, there is one.
    assert at_answer.customer == at_end.customer and at_answer.customer is not None
    assert at_answer.order == at_end.order and at_answer.order is not None
    assert at_answer.order.externalId == "cs-acme-call-c1"
    assert at_answer.popups, "its pop-up is planned as before"
    off = plan_call(answered, config(at_answer=False), MAPPING)
    assert not off.lookup and off.customer is None and off.order is None
    assert off.popups == at_answer.popups


@pytest.mark.parametrize("event", [
    record("c1", "answered", client_phone="+380443334400"),  # its own tracking number
    record("c1", "answered", client_phone="+380443334401"),  # a listed own number
    record("c1", "answered", direction="out"),
    record("c1", "started"),
], ids=["own-tracking-number", "own-number", "outbound", "started"])
def test_own_numbers_outbound_calls_and_started_records_never_make_a_lead(
        event: CallEvent) -> None:
    plan = plan_call(event, config(own_numbers={"numbers": ["+380443334401"]}), MAPPING)
    assert not plan.lookup and plan.customer is None and plan.order is None


def test_the_lead_options_still_choose_what_is_made() -> None:
    plan = plan_call(record("c1", "answered"), config(lead={"at_answer": True,
                                                           "create_customer": False}), MAPPING)
    assert plan.customer is None and plan.order is not None
    neither = config(lead={"at_answer": True, "create_customer": False, "create_order": False})
    assert not plan_call(record("c1", "answered"), neither, MAPPING).lookup


# -- delivery against the double --------------------------------------------------------------

class Harness:
    def __init__(self, double: CRMDouble) -> None:
        self.ledger = CrashableLedger()
        self.outlets = Outlets()
        self.cfg = config(double.portal_url("acme"))
        self.client, self.steps, self.lane = quick_lane(self.cfg, self.ledger, self.outlets)
        self.writes: list[str] = []

    def count_writes(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for name in WRITES:
            real = getattr(self.client, name)

            async def counted(*args: Any, _real: Any = real, _name: str = name,
                              **kwargs: Any) -> Any:
                self.writes.append(_name)
                return await _real(*args, **kwargs)

            monkeypatch.setattr(self.client, name, counted)

    async def deliver(self, *events: CallEvent) -> None:
        """The events as one lane batch (the lane runs a caller's records in rounds)."""
        await self.lane.deliver([work_of(e, self.cfg, MAPPING, n) for n, e in enumerate(events)])

    def restart(self) -> None:
        """The worker died: the ledger keeps what was synced, the process's caches are gone."""
        self.ledger.crash()
        self.steps.known_callers.clear()


@pytest.fixture
async def harness(crm_double: CRMDouble, portal: Portal) -> AsyncIterator[Harness]:
    h = Harness(crm_double)
    await enable_telephony(h.client)
    yield h
    await h.client.aclose()


def crm(portal: Portal) -> dict[str, Any]:
    return {"customers": sorted(c["externalId"] for c in portal.customers.values()),
            "orders": sorted((o["externalId"], o["customer"]["id"])
                             for o in portal.orders.values()),
            "calls": sorted(portal.calls), "tasks": len(portal.tasks)}


def one_lead(portal: Portal, *, calls: list[str]) -> dict[str, Any]:
    [customer_id] = portal.customers
    return {"customers": ["cs-acme-380501234567"],
            "orders": [("cs-acme-call-c1", customer_id)], "calls": calls, "tasks": 0}


async def test_the_answered_record_makes_the_lead_and_the_ended_one_only_the_call(
        harness: Harness, portal: Portal, monkeypatch: pytest.MonkeyPatch) -> None:
    harness.count_writes(monkeypatch)
    await harness.deliver(record("c1", "answered"))
    assert crm(portal) == one_lead(portal, calls=[]), "made while the manager is on the call"
    [customer] = portal.customers.values()
    [order] = portal.orders.values()
    assert customer["managerId"] == 27 and order["managerId"] == 27
    assert order["source"] == {"source": "google", "medium": "cpc"}
    facts = harness.ledger.facts("acme", "c1")
    assert facts["lead"] is True and facts["customer_id"] == customer["id"]
    assert facts["order"] == order["id"] and facts["done_answered"] is True
    await harness.deliver(record("c1", "ended"))
    assert crm(portal) == one_lead(portal, calls=["c1"])
    assert portal.calls["c1"]["result"] == "answered"
    assert harness.writes == ["create_customer", "create_order"]
    assert harness.outlets.invalids == [] and harness.outlets.dead == []


async def test_redelivered_records_make_nothing_again(harness: Harness, portal: Portal) -> None:
    answered, ended = record("c1", "answered"), record("c1", "ended")
    await harness.deliver(answered)
    await harness.deliver(ended)
    want = crm(portal)
    await harness.deliver(ended)
    await harness.deliver(answered)
    harness.restart()  # and again, read by a worker that lost what it had not synced
    await harness.deliver(answered)
    await harness.deliver(ended)
    assert crm(portal) == want == one_lead(portal, calls=["c1"])
    assert harness.outlets.invalids == [] and harness.outlets.dead == []


async def test_both_records_in_one_batch_make_one_lead(harness: Harness, portal: Portal) -> None:
    await harness.deliver(record("c1", "answered"), record("c1", "ended"))
    assert crm(portal) == one_lead(portal, calls=["c1"])
    assert harness.outlets.invalids == [] and harness.outlets.dead == []


@pytest.mark.parametrize("applied", [False, True], ids=["before-the-crm", "after-the-crm"])
@pytest.mark.parametrize("method", ["create_customer", "create_order"])
@pytest.mark.parametrize("next_record", ["answered", "ended"])
async def test_a_crash_while_the_answered_record_makes_the_lead_makes_no_duplicate(
        harness: Harness, portal: Portal, monkeypatch: pytest.MonkeyPatch, method: str,
        applied: bool, next_record: str) -> None:
    """The worker dies at a create of the answered record's, before or after the CRM took it;
    the next owner reads the answered record again, or (it was committed) only the ended one."""
    real = getattr(harness.client, method)

    async def dying(*args: Any, **kwargs: Any) -> Any:
        if applied:
            await real(*args, **kwargs)
        raise Crash

    with monkeypatch.context() as m:
        m.setattr(harness.client, method, dying)
        with pytest.raises(Crash):
            await harness.deliver(record("c1", "answered"))
    harness.restart()
    assert harness.ledger.facts("acme", "c1")["lead"] is True, "decided durably before a create"
    if next_record == "answered":
        await harness.deliver(record("c1", "answered"))
    await harness.deliver(record("c1", "ended"))
    assert crm(portal) == one_lead(portal, calls=["c1"])
    assert harness.outlets.invalids == [] and harness.outlets.dead == []


async def test_a_known_caller_gets_no_order_at_answer_nor_at_end(
        harness: Harness, portal: Portal) -> None:
    await harness.deliver(record("c0", "ended", started_at=(NOW - timedelta(hours=1)).isoformat()))
    before = crm(portal)
    await harness.deliver(record("c1", "answered"))
    await harness.deliver(record("c1", "ended"))
    after = crm(portal)
    assert after["customers"] == before["customers"] and after["orders"] == before["orders"]
    assert harness.ledger.facts("acme", "c1")["lead"] is False
    assert after["calls"] == ["c0", "c1"]


async def test_an_unanswered_ended_record_after_the_answered_one_still_gets_its_task(
        harness: Harness, portal: Portal) -> None:
    await harness.deliver(record("c1", "answered"))
    await harness.deliver(record("c1", "ended", status="failed", talk_seconds=0))
    [task] = portal.tasks.values()
    assert task["customer"] == {"id": next(iter(portal.customers))}
    assert len(portal.orders) == 1 and portal.calls["c1"]["result"] == "failed"


async def test_a_call_whose_answered_record_never_comes_makes_its_lead_at_the_end(
        harness: Harness, portal: Portal) -> None:
    await harness.deliver(record("c1", "ended"))
    assert crm(portal) == one_lead(portal, calls=["c1"])
