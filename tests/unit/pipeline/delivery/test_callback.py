"""The call-back loop: planned only with its option, one open task a caller, completed once."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY

from pipeline.crm.methods import TASK_EDIT
from pipeline.delivery.ledger import CallerFacts, MemoryLedger
from pipeline.delivery.planning import plan_call
from pipeline.delivery.steps import caller_key
from pipeline.delivery.work import Work
from pipeline.devtools.crmdouble.server import CRMDouble
from pipeline.devtools.crmdouble.state import ApiKey, Fault, Portal
from schemas import CallEvent, EmployeeLink, EmployeeMapping, IntegrationConfig
from tests.crmlane import enable_telephony, quick_lane, work_of
from tests.unit.pipeline.fakes import Outlets

NOW = datetime.now(UTC).replace(microsecond=0)
PHONE = "+380501234567"
MAPPING = EmployeeMapping(tenant_id="acme", senior_manager_id=28,
                          employees={"emp-1": EmployeeLink(crm_user_id=27, extension="101")})


def config(portal_url: str = "http://127.0.0.1:1/acme", *, loop: bool = True,
           key: str = "acme-key") -> IntegrationConfig:
    return IntegrationConfig.model_validate({
        "tenant_id": "acme", "portal_url": portal_url, "admin_email": "admin@acme.example.com",
        "site_code": "main", "api_key": key, "timezone": "Europe/Kyiv",
        "options": {"callback_loop": loop}})


def call(call_id: str, minutes: int, **changes: Any) -> CallEvent:
    base: dict[str, Any] = {
        "call_id": call_id, "tenant_id": "acme",
        "started_at": (NOW - timedelta(hours=3) + timedelta(minutes=minutes)).isoformat(),
        "direction": "in", "client_phone": PHONE, "status": "no_answer",
        "employee": {"id": "emp-1", "extension": "101"}, "talk_seconds": 0,
        "wait_seconds": 15, "tracking_number": "+380443334400"}
    return CallEvent.model_validate({**base, **changes})


def answered(call_id: str, minutes: int, **changes: Any) -> CallEvent:
    return call(call_id, minutes, status="answered", talk_seconds=40, wait_seconds=5, **changes)


def waits() -> tuple[float, float]:
    """The histogram's count and sum so far (it is process-wide)."""
    return (REGISTRY.get_sample_value("callsync_callback_seconds_count") or 0.0,
            REGISTRY.get_sample_value("callsync_callback_seconds_sum") or 0.0)


# -- planning ---------------------------------------------------------------------------------

def test_without_the_option_nothing_of_the_loop_is_planned() -> None:
    off = config(loop=False)
    missed = plan_call(call("m1", 0), off, MAPPING)
    assert missed.task is not None and missed.callback is None
    assert plan_call(answered("a1", 10), off, MAPPING).callback is None


def test_a_missed_call_notes_its_task_line_and_when_it_started() -> None:
    event = call("m1", 0)
    plan = plan_call(event, config(), MAPPING)
    assert plan.task is not None and plan.callback is not None
    assert not plan.callback.completes and plan.callback.at == event.started_at
    assert plan.callback.note == plan.task.commentary and plan.callback.note.startswith("Call m1 ")


def test_a_call_that_reaches_the_caller_completes_saying_when_and_by_whom() -> None:
    inbound = answered("a1", 10)
    plan = plan_call(inbound, config(), MAPPING)
    assert plan.callback is not None and plan.callback.completes
    assert plan.callback.at == inbound.started_at + timedelta(seconds=5)
    local = plan.callback.at.astimezone(config().zone).strftime("%Y-%m-%d %H:%M")
    assert plan.callback.note == (f"Answered again at {local} by CRM user 27 (employee emp-1, "
                                  "ext 101) (call a1).")
    outbound = plan_call(answered("o1", 20, direction="out", employee={"id": "emp-9"}),
                         config(), MAPPING)
    assert outbound.callback is not None and outbound.callback.completes
    assert outbound.callback.note.startswith("Called back at ") and \
        "by employee emp-9 (call o1)." in outbound.callback.note


@pytest.mark.parametrize("event", [
    call("o2", 5, direction="out"),  # a call-back nobody answered
    call("s1", 5, status="in_progress"),
    answered("own", 5, client_phone="+380443334400"),  # the tenant's own line
], ids=["unanswered-outbound", "in-progress", "own-number"])
def test_calls_that_did_not_reach_a_caller_complete_nothing(event: CallEvent) -> None:
    assert plan_call(event, config(), MAPPING).callback is None


# -- delivery against the double --------------------------------------------------------------

class Harness:
    def __init__(self, double: CRMDouble, *, loop: bool = True, key: str = "acme-key") -> None:
        self.ledger = MemoryLedger()
        self.outlets = Outlets()
        self.cfg = config(double.portal_url("acme"), loop=loop, key=key)
        self.client, self.steps, self.lane = quick_lane(self.cfg, self.ledger, self.outlets)
        self.works: list[Work] = []

    async def deliver(self, *events: CallEvent) -> None:
        works = [work_of(e, self.cfg, MAPPING, n) for n, e in enumerate(events)]
        self.works += works
        await self.lane.deliver(works)

    def caller(self) -> CallerFacts:
        return self.ledger.caller("acme", caller_key("acme", self.client.base_url, PHONE))


@pytest.fixture
async def harness(crm_double: CRMDouble, portal: Portal) -> AsyncIterator[Harness]:
    h = Harness(crm_double)
    await enable_telephony(h.client)
    yield h
    await h.client.aclose()


def completions(portal: Portal) -> list[dict[str, Any]]:
    return [e for e in portal.task_edits if e.get("complete") is True]


async def test_missed_then_answered_completes_the_task_and_measures_the_wait_once(
        harness: Harness, portal: Portal) -> None:
    before = waits()
    await harness.deliver(call("m1", 0))
    [task] = portal.tasks.values()
    assert not task["complete"] and harness.caller()["open_task"] == task["id"]
    await harness.deliver(answered("a1", 30))
    assert task["complete"] is True and "completedAt" in task
    assert task["commentary"].startswith("Call m1 ") and \
        task["commentary"].endswith("by CRM user 27 (employee emp-1, ext 101) (call a1).")
    assert len(completions(portal)) == 1 and list(portal.tasks) == [task["id"]]
    count, total = waits()
    assert count == before[0] + 1 and total - before[1] == 30 * 60 + 5
    assert harness.caller()["open_task"] is None and harness.caller()["closed_task"] == task["id"]
    assert harness.ledger.facts("acme", "a1")["callback"] == task["id"]

    await harness.deliver(call("m1", 0), answered("a1", 30))  # redelivered, both
    assert len(completions(portal)) == 1 and len(portal.tasks) == 1
    assert waits() == (count, total), "measured once"
    assert harness.outlets.dead == [] and harness.outlets.invalids == []


async def test_later_missed_calls_are_noted_on_the_one_open_task_once(
        harness: Harness, portal: Portal) -> None:
    await harness.deliver(call("m1", 0))
    await harness.deliver(call("m2", 7, status="busy"), call("m3", 9))
    [task] = portal.tasks.values()
    lines = task["commentary"].split("\n")
    assert [line.split(" ")[1] for line in lines] == ["m1", "m2", "m3"]
    assert harness.ledger.facts("acme", "m2")["task"] == task["id"]
    await harness.deliver(call("m1", 0), call("m2", 7, status="busy"), call("m3", 9))
    assert task["commentary"] == "\n".join(lines) and len(portal.task_edits) == 2
    assert harness.caller()["open_since"] == call("m1", 0).started_at.timestamp()


async def test_an_open_task_outlives_a_prune_of_callers_first_seen_long_ago(
        harness: Harness, portal: Portal) -> None:
    key = caller_key("acme", harness.client.base_url, PHONE)
    harness.ledger.data[f"acme|{key}"] = {"at": 1, "customer_id": 999}  # known for years
    await harness.deliver(call("m1", 0))
    harness.ledger.prune(older_than=datetime.now(UTC).timestamp() - 3600)
    assert isinstance(harness.caller().get("open_task"), int)


async def test_a_crash_after_a_note_does_not_add_it_again(harness: Harness,
                                                          portal: Portal) -> None:
    await harness.deliver(call("m1", 0))
    kept = copy.deepcopy(harness.ledger.data)
    await harness.deliver(call("m2", 5))
    harness.ledger.data.clear()
    harness.ledger.data.update(kept)  # the note was made, its record lost
    await harness.deliver(call("m2", 5))
    [task] = portal.tasks.values()
    assert task["commentary"].count("Call m2 ") == 1 and len(portal.task_edits) == 1
    assert harness.ledger.facts("acme", "m2")["task"] == task["id"]


async def test_a_completion_whose_answer_was_lost_is_not_lost_nor_done_twice(
        harness: Harness, crm_double: CRMDouble, portal: Portal) -> None:
    await harness.deliver(call("m1", 0))
    crm_double.state.faults.append(Fault(portal="acme", method=TASK_EDIT, status=500,
                                         error_msg="Internal Server Error", remaining=1,
                                         apply_first=True))
    before = waits()
    await harness.deliver(answered("a1", 10))
    [task] = portal.tasks.values()
    assert task["complete"] is True and task["commentary"].count("(call a1)") == 1
    assert waits()[0] == before[0] + 1 and harness.outlets.dead == []
    assert harness.ledger.facts("acme", "a1")["callback"] == task["id"]


async def test_a_crash_after_the_completion_mends_without_a_second_edit(
        harness: Harness, portal: Portal) -> None:
    await harness.deliver(call("m1", 0))
    kept = copy.deepcopy(harness.ledger.data)  # the ledger as the changelog had it
    await harness.deliver(answered("a1", 10))
    edits = len(portal.task_edits)
    harness.ledger.data.clear()
    harness.ledger.data.update(kept)  # the worker died before the record was durable
    before = waits()
    await harness.deliver(answered("a1", 10))
    [task] = portal.tasks.values()
    assert len(portal.task_edits) == edits and task["complete"] is True
    assert waits()[0] == before[0] + 1, "the process that measured it died with its measure"
    assert harness.ledger.facts("acme", "a1")["callback"] == task["id"]
    assert harness.caller()["open_task"] is None


async def test_a_task_completed_by_hand_is_neither_noted_on_nor_measured(
        harness: Harness, portal: Portal) -> None:
    await harness.deliver(call("m1", 0))
    [first] = portal.tasks.values()
    first["complete"] = True  # a manager closed it in the CRM
    await harness.deliver(call("m2", 5))
    assert len(portal.tasks) == 2 and "m2" not in first["commentary"]
    second = portal.tasks[max(portal.tasks)]
    assert harness.caller()["open_task"] == second["id"]
    second["complete"] = True
    before = waits()
    await harness.deliver(answered("a1", 10))
    assert portal.task_edits == [] and waits() == before
    assert harness.caller()["open_task"] is None


async def test_a_key_without_task_edit_parks_the_completion_naming_the_method(
        crm_double: CRMDouble, portal: Portal) -> None:
    portal.keys["narrow"] = ApiKey(key="narrow", label="narrow",
                                   methods=set(portal.keys["acme-key"].methods) - {TASK_EDIT})
    h = Harness(crm_double, key="narrow")
    try:
        await enable_telephony(h.client)
        await h.deliver(call("m1", 0), call("m2", 5))
        [task] = portal.tasks.values()
        [(_, parked)] = [(w, a) for w, a in h.outlets.dead]
        assert [(a.reason, a.method, a.broken) for a in parked] == [
            ("task:AccessDenied", TASK_EDIT, False)]
        assert "m2" not in task["commentary"] and len(portal.tasks) == 1, "no second task"
        await h.deliver(answered("a1", 10))
        assert not task["complete"]
        assert [a.reason for _, actions in h.outlets.dead[1:] for a in actions] == [
            "callback:AccessDenied"]
        assert "callback" not in h.ledger.facts("acme", "a1"), "a replay may still do it"
    finally:
        await h.client.aclose()


async def test_without_the_option_every_missed_call_has_its_own_task_and_none_completes(
        crm_double: CRMDouble, portal: Portal) -> None:
    h = Harness(crm_double, loop=False)
    try:
        await enable_telephony(h.client)
        await h.deliver(call("m1", 0), call("m2", 5), answered("a1", 10))
        assert len(portal.tasks) == 2 and portal.task_edits == []
        assert not any(t["complete"] for t in portal.tasks.values()) and h.caller() == \
            {k: v for k, v in h.caller().items() if k in ("at", "customer_id")}
    finally:
        await h.client.aclose()
