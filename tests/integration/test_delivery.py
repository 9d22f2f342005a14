"""Tenant lanes and delivery steps against the double: idempotent, paced, failures sorted."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import weakref
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pipeline.config import CRMSettings
from pipeline.crm import errors as e
from pipeline.crm.client import RetailCRMClient
from pipeline.delivery.announcer import MAX_ANNOUNCING
from pipeline.delivery.errorpolicy import DeadLetter, Reason
from pipeline.delivery.helduploads import HeldUploads
from pipeline.delivery.lanes import LaneRegistry, TenantLane
from pipeline.delivery.ledger import MemoryLedger
from pipeline.delivery.planning import plan_call
from pipeline.delivery.work import Work
from pipeline.devtools.crmdouble.server import CRMDouble
from pipeline.devtools.crmdouble.state import ApiKey, Fault, Portal
from pipeline.streams.offsets import OffsetGate
from schemas import CallEvent, EmployeeLink, EmployeeMapping, IntegrationConfig
from tests.crmlane import Crash, CrashableLedger, enable_telephony, quick_lane, work_of
from tests.integration.support import RecordingOutlets
from tests.waiting import wait_until

NOW = datetime.now(UTC)
MAPPING = EmployeeMapping(tenant_id="acme", senior_manager_id=28,
                          employees={"emp-1": EmployeeLink(crm_user_id=27, extension="101")})


def config(double: CRMDouble, key: str = "acme-key") -> IntegrationConfig:
    return IntegrationConfig.model_validate({
        "tenant_id": "acme", "portal_url": double.portal_url("acme"),
        "admin_email": "admin@acme.example.com", "site_code": "main", "api_key": key,
        "timezone": "Europe/Kyiv"})


def call(n: int, **changes: Any) -> CallEvent:
    base: dict[str, Any] = {
        "call_id": f"c{n}", "tenant_id": "acme",
        "started_at": (NOW - timedelta(hours=3) + timedelta(minutes=n)).isoformat(),
        "direction": "in", "client_phone": f"+38050111{n:04d}", "status": "answered",
        "employee": {"id": "emp-1", "extension": "101"}, "talk_seconds": 30,
        "wait_seconds": 5}
    return CallEvent.model_validate({**base, **changes})


class Harness:
    def __init__(self, double: CRMDouble, *, key: str = "acme-key") -> None:
        self.double = double
        self.ledger = CrashableLedger()
        self.outlets = RecordingOutlets()
        self.acked: list[str] = []
        self.cfg = config(double, key)
        self.client, self.steps, self.lane = quick_lane(self.cfg, self.ledger, self.outlets)

    def work(self, event: CallEvent, offset: int = 0) -> Work:
        return work_of(event, self.cfg, MAPPING, offset,
                       ack=lambda: self.acked.append(event.call_id))

    async def deliver(self, *events: CallEvent) -> None:
        await self.lane.deliver([self.work(e, n) for n, e in enumerate(events)])


@pytest.fixture
async def harness(crm_double: CRMDouble, portal: Portal) -> AsyncIterator[Harness]:
    h = Harness(crm_double)
    await enable_telephony(h.client)
    yield h
    await h.client.aclose()


def requests(portal: Portal, double: CRMDouble) -> int:
    return int(double.state.stats()[portal.name]["requests"])


async def test_a_new_lead_gets_customer_order_and_call(harness: Harness, portal: Portal) -> None:
    await harness.deliver(call(1, status="no_answer", talk_seconds=0))
    assert harness.acked == ["c1"]
    assert [c["externalId"] for c in portal.customers.values()] == ["cs-acme-380501110001"]
    customer_id = next(iter(portal.customers))
    [order] = portal.orders.values()
    assert order["externalId"] == "cs-acme-call-c1" and order["customer"]["id"] == customer_id
    [task] = portal.tasks.values()
    assert task["performerId"] == 27 and task["customer"] == {"id": customer_id}
    assert portal.calls["c1"]["result"] == "no answer"
    assert harness.outlets.rejected == [] and harness.outlets.dead == []


async def test_redelivery_creates_nothing_and_costs_no_request(harness: Harness,
                                                              portal: Portal,
                                                              crm_double: CRMDouble) -> None:
    events = [call(1, status="busy", talk_seconds=0), call(2), call(3, status="no_answer")]
    await harness.deliver(*events)
    before = (len(portal.customers), len(portal.orders), len(portal.tasks), len(portal.calls))
    spent = requests(portal, crm_double)
    await harness.deliver(*events)
    assert (len(portal.customers), len(portal.orders), len(portal.tasks),
            len(portal.calls)) == before == (3, 3, 2, 3)
    assert requests(portal, crm_double) == spent
    assert harness.acked == ["c1", "c2", "c3"] * 2


async def test_redelivery_after_a_lost_ledger_relies_on_the_crm(crm_double: CRMDouble,
                                                                harness: Harness,
                                                                portal: Portal) -> None:
    events = [call(1, status="busy", talk_seconds=0), call(2)]
    await harness.deliver(*events)
    harness.ledger.data.clear()  # a worse crash: nothing of the ledger survived
    await harness.deliver(*events)
    assert (len(portal.customers), len(portal.orders), len(portal.calls)) == (2, 2, 2)
    # the customer is known now, so the second time is no new lead and no new order;
    # the task has no CRM-side key: without its ledger entry it is made again (documented)
    assert len(portal.tasks) == 2


async def test_a_crash_between_task_create_and_record_makes_no_second_task(
        harness: Harness, portal: Portal) -> None:
    event = call(1, status="no_answer", talk_seconds=0)
    await harness.deliver(event)
    [task_id] = portal.tasks
    facts = harness.ledger.data["acme|c1"]
    # as if the worker died after tasks/create but before its result was recorded
    harness.ledger.data["acme|c1"] = {k: v for k, v in facts.items()
                                      if k not in ("task", "done_ended")}
    await harness.deliver(event)
    assert list(portal.tasks) == [task_id]
    assert harness.ledger.data["acme|c1"]["task"] == task_id


async def test_a_task_made_is_written_at_once_for_the_partition_s_next_owner(
        harness: Harness, portal: Portal, crm_double: CRMDouble,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The partition moves on after tasks/create answered, before the call settled: what the
    ledger wrote by then (the release flushes it) tells the next owner the task, so it neither
    searches the CRM's tasks for it nor makes another. Facts gathered for the settlement are
    not written yet (they are lost with the move, and redone)."""
    event = call(1, status="no_answer", talk_seconds=0)

    async def moved(*args: Any, **kwargs: Any) -> Any:
        raise Crash  # the calls upload, after the task: the work never settles here

    with monkeypatch.context() as m:
        m.setattr(harness.client, "upload_calls", moved)
        with pytest.raises(Crash):
            await harness.deliver(event)
    [task_id] = portal.tasks
    harness.ledger._pending.clear()  # what was gathered but not written stays with the old owner
    harness.steps.known_callers.clear()
    searches = crm_double.state.by_method.get((portal.name, "/api/tasks"), 0)
    await harness.deliver(event)
    assert list(portal.tasks) == [task_id]
    assert crm_double.state.by_method.get((portal.name, "/api/tasks"), 0) == searches
    assert harness.ledger.data["acme|c1"]["task"] == task_id
    assert harness.acked == ["c1"]


CRM_WRITES = ["create_customer", "create_order", "create_task", "upload_calls"]


def crm_state(portal: Portal) -> dict[str, Any]:
    phone_of = {c["id"]: c["phones"][0]["number"] for c in portal.customers.values()}
    return {
        "customers": sorted((c["phones"][0]["number"], c["managerId"])
                            for c in portal.customers.values()),
        "orders": sorted((o["externalId"], phone_of[o["customer"]["id"]])
                         for o in portal.orders.values()),
        "tasks": sorted((t["performerId"], phone_of[t["customer"]["id"]])
                        for t in portal.tasks.values()),
        "calls": sorted((c["externalId"], c["result"]) for c in portal.calls.values())}


@pytest.mark.parametrize("occurrence", [1, 2])
@pytest.mark.parametrize("applied", [False, True], ids=["before-the-crm", "after-the-crm"])
@pytest.mark.parametrize("method", CRM_WRITES)
async def test_a_crash_at_any_crm_write_and_a_redelivery_leave_the_crm_as_without_it(
        harness: Harness, portal: Portal, monkeypatch: pytest.MonkeyPatch, method: str,
        applied: bool, occurrence: int) -> None:
    """The worker dies before or after the CRM took a write; the ledger keeps what was synced;
    everything is delivered again from the first event (a replay resumed from old offsets)."""
    p1, p3 = "+380501110001", "+380501110003"
    events = [call(1, status="no_answer", talk_seconds=0),
              call(2, client_phone=p1, status="busy", talk_seconds=0), call(3)]
    real = getattr(harness.client, method)
    seen = 0

    async def dying(*args: Any, **kwargs: Any) -> Any:
        nonlocal seen
        seen += 1
        if seen != occurrence:
            return await real(*args, **kwargs)
        if applied:
            await real(*args, **kwargs)
        raise Crash

    with monkeypatch.context() as m:
        m.setattr(harness.client, method, dying)
        with pytest.raises(Crash):
            for event in events:
                await harness.deliver(event)
    harness.ledger.crash()
    harness.steps.known_callers.clear()
    for event in events:
        await harness.deliver(event)
    assert crm_state(portal) == {
        "customers": [(p1, 27), (p3, 27)],
        "orders": [("cs-acme-call-c1", p1), ("cs-acme-call-c3", p3)],
        "tasks": [(27, p1), (27, p1)],
        "calls": [("c1", "no answer"), ("c2", "busy"), ("c3", "answered")]}
    assert harness.outlets.rejected == [] and harness.outlets.dead == []


async def test_a_known_caller_is_no_new_lead(harness: Harness, portal: Portal) -> None:
    await harness.deliver(call(1))
    await harness.deliver(call(2, client_phone="+380501110001", status="busy",
                               talk_seconds=0))
    assert len(portal.customers) == 1 and len(portal.orders) == 1
    [task] = portal.tasks.values()
    assert task["performerId"] == 27  # the customer's manager, as telephony/manager says


async def test_uploads_are_batched(harness: Harness, portal: Portal,
                                   crm_double: CRMDouble) -> None:
    events = [call(n, direction="out") for n in range(1, 121)]
    await harness.deliver(*events)
    assert len(portal.calls) == 120
    by_key = crm_double.state.requests[("acme", "acme")]
    assert by_key == {200: 3 + 1}  # three uploads of <=50, plus the module edit


async def test_transient_failures_are_retried(crm_double: CRMDouble, harness: Harness,
                                              portal: Portal) -> None:
    crm_double.state.faults.append(Fault(portal="acme", status=503, remaining=2))
    crm_double.state.faults.append(Fault(portal="acme", method="/api/telephony/calls/upload",
                                         status=502, remaining=1))
    await harness.deliver(call(1))
    assert "c1" in portal.calls and harness.outlets.dead == []


async def test_a_revoked_key_breaks_the_lane_and_parks_what_follows(
        crm_double: CRMDouble, harness: Harness, portal: Portal) -> None:
    portal.keys["acme-key"].active = False
    await harness.deliver(call(1), call(2))
    await harness.deliver(call(3))
    assert [c for c, _ in harness.outlets.dead] == ["c1", "c2", "c3"]
    assert all(a[0].broken and a[0].reason == "InvalidApiKey" for _, a in harness.outlets.dead)
    assert harness.acked == ["c1", "c2", "c3"]
    assert requests(portal, crm_double) == 1 + 1  # module edit, then one failed call


async def test_access_denied_parks_only_the_step_that_needs_the_method(
        crm_double: CRMDouble, portal: Portal) -> None:
    portal.keys["no-tasks"] = ApiKey("no-tasks", {m for m in portal.keys["acme-key"].methods
                                                 if m != "/api/tasks/create"}, "no-tasks")
    h = Harness(crm_double, key="no-tasks")
    await enable_telephony(h.client)
    await h.deliver(call(1, status="no_answer", talk_seconds=0), call(2))
    await h.client.aclose()
    assert set(portal.calls) == {"c1", "c2"} and len(portal.orders) == 2
    assert portal.tasks == {}
    [(call_id, [parked])] = h.outlets.dead
    assert call_id == "c1" and parked.method == "/api/tasks/create" and not parked.broken
    assert h.lane.broken is None


async def test_a_call_the_crm_refuses_goes_invalid_and_its_batch_still_lands(
        crm_double: CRMDouble, harness: Harness, portal: Portal) -> None:
    good = call(1, direction="out")
    bad = call(2, direction="out")
    work_bad = harness.work(bad, 1)
    assert work_bad.plan.upload is not None
    # a user id the portal does not know: the double refuses that call in the upload
    work_bad.plan = work_bad.plan.__class__(**{**work_bad.plan.__dict__, "upload":
                                               work_bad.plan.upload.model_copy(
                                                   update={"userId": 999})})
    await harness.lane.deliver([harness.work(good, 0), work_bad, harness.work(call(3), 2)])
    assert set(portal.calls) == {"c1", "c3"}
    assert [c for c, _ in harness.outlets.rejected] == ["c2"]
    assert "userId" in harness.outlets.rejected[0][1]


async def test_no_one_to_give_the_task_to_is_parked(crm_double: CRMDouble, harness: Harness,
                                                   portal: Portal) -> None:
    work = harness.work(call(1, status="no_answer", talk_seconds=0, employee=None))
    work.plan = plan_call(work.event, harness.cfg, EmployeeMapping(tenant_id="acme"))
    await harness.lane.deliver([work])
    assert portal.tasks == {} and "c1" in portal.calls
    [(_, [parked])] = harness.outlets.dead
    assert parked.reason == "task:NoPerformer"


async def test_stale_pop_ups_are_not_sent_and_fresh_ones_are(harness: Harness,
                                                           portal: Portal) -> None:
    fresh = call(1, started_at=datetime.now(UTC).isoformat(), stage="started",
                 status="in_progress")
    await harness.deliver(call(2, stage="started", status="in_progress"), fresh)
    assert [e["callExternalId"] for e in portal.call_events] == ["c1"]
    assert portal.call_events[0]["userIds"] == [27]


async def test_the_lane_runs_on_its_own(harness: Harness, portal: Portal) -> None:
    harness.lane.start()
    for n in range(1, 6):
        await harness.lane.submit(harness.work(call(n, direction="out"), n))
    await wait_until(lambda: len(harness.acked) == 5, "five works acknowledged",
                     detail=lambda: f"acknowledged: {harness.acked}")
    await harness.lane.stop()
    assert harness.acked == [f"c{n}" for n in range(1, 6)] and len(portal.calls) == 5


def fresh(n: int, **changes: Any) -> CallEvent:
    return call(n, started_at=datetime.now(UTC).isoformat(), **changes)


async def test_status_sync_sets_busy_and_restores_the_status_before(
        crm_double: CRMDouble, harness: Harness, portal: Portal) -> None:
    harness.cfg = harness.cfg.model_copy(update={"options": harness.cfg.options.model_copy(
        update={"status_sync": True})})
    await harness.deliver(fresh(1, stage="answered", status="in_progress"))
    assert portal.users[27]["status"] == "busy"
    await harness.deliver(fresh(1))
    assert portal.users[27]["status"] == "free"
    assert [(c["from"], c["to"]) for c in portal.status_changes] == [("free", "busy"),
                                                                     ("busy", "free")]


async def test_status_sync_leaves_a_status_the_user_set_by_hand(
        crm_double: CRMDouble, harness: Harness, portal: Portal) -> None:
    harness.cfg = harness.cfg.model_copy(update={"options": harness.cfg.options.model_copy(
        update={"status_sync": True})})
    await harness.deliver(fresh(1, stage="answered", status="in_progress"))
    portal.users[27]["status"] = "dinner"  # the manager changed it during the call
    await harness.deliver(fresh(1))
    assert portal.users[27]["status"] == "dinner"
    assert len(portal.status_changes) == 1


async def test_status_sync_ignores_stale_events(crm_double: CRMDouble, harness: Harness,
                                                portal: Portal) -> None:
    harness.cfg = harness.cfg.model_copy(update={"options": harness.cfg.options.model_copy(
        update={"status_sync": True})})
    await harness.deliver(call(1, stage="answered", status="in_progress"))
    assert portal.status_changes == [] and portal.users[27]["status"] == "free"


async def test_the_roster_is_fetched_page_by_page(crm_double: CRMDouble,
                                                  portal: Portal) -> None:
    from pipeline.delivery.employees import fetch_roster
    from pipeline.devtools.crmdouble.admin import UserSpec, add_user

    for n in range(130):
        add_user(portal, UserSpec(firstName=f"M{n}"))
    add_user(portal, UserSpec(firstName="Off", active=False))
    async with RetailCRMClient(base_url=crm_double.portal_url("acme"),
                               api_key="acme-key") as crm:
        roster = await fetch_roster(crm, now=NOW)
    assert roster.manager_groups == ["manager"]
    assert len(roster.managers) == 132 and 29 not in roster.managers and 30 not in \
        roster.managers


async def test_a_broken_key_is_probed_at_most_once_per_interval(
        crm_double: CRMDouble, harness: Harness, portal: Portal) -> None:
    harness.lane.probe_interval = 300.0
    portal.keys["acme-key"].active = False
    await harness.deliver(call(1))
    assert harness.lane.broken is not None
    for n in range(2, 6):  # within the interval: parked without a single request
        await harness.deliver(call(n))
    assert requests(portal, crm_double) == 1 + 1  # module edit, the one failed call
    harness.lane.probe_interval = 0.0  # the interval is over (no wait on the wall clock)
    await harness.deliver(call(6))  # one probe, still refused
    assert requests(portal, crm_double) == 3 and harness.lane.broken is not None
    portal.keys["acme-key"].active = True  # the admin restored the key
    await harness.deliver(call(7))
    assert harness.lane.broken is None and "c7" in portal.calls
    assert [c for c, _ in harness.outlets.dead] == ["c1", "c2", "c3", "c4", "c5", "c6"]


async def test_a_portal_that_is_down_parks_its_tenant_until_it_answers_again(
        crm_double: CRMDouble, harness: Harness, portal: Portal) -> None:
    harness.lane.outage_probe_interval = 300.0
    crm_double.state.faults.append(Fault(portal="acme", status=500))  # every method, even probes
    await harness.deliver(call(1), call(2))
    broken = harness.lane.broken
    assert broken is not None and broken.outage and broken.reason == \
        "RetriesExhausted:CRMServerError"
    asked = requests(portal, crm_double)
    assert asked == 1 + 4 + 1  # module edit, four tries of the first step, one question
    await harness.deliver(call(3), call(4))  # parked at once: a down portal is not asked
    assert requests(portal, crm_double) == asked
    assert [c for c, _ in harness.outlets.dead] == ["c1", "c2", "c3", "c4"]
    assert all(a[0].outage for _, a in harness.outlets.dead)
    crm_double.state.faults.clear()
    harness.lane.outage_probe_interval = 0.0  # the interval is over (no wait on the clock)
    await harness.deliver(call(5))  # one probe answers: delivery resumes
    assert harness.lane.broken is None and list(portal.calls) == ["c5"]


async def test_one_request_that_keeps_failing_parks_only_its_step(
        crm_double: CRMDouble, harness: Harness, portal: Portal) -> None:
    for method in ("/api/orders/upload", "/api/orders/create"):
        crm_double.state.faults.append(Fault(portal="acme", method=method, status=500))
    await harness.deliver(call(1), call(2))
    assert harness.lane.broken is None, "the portal answers: no outage, no stalled tenant"
    assert sorted(portal.calls) == ["c1", "c2"] and len(portal.customers) == 2
    assert portal.orders == {}
    assert [(c, [a.reason for a in acts]) for c, acts in harness.outlets.dead] == [
        ("c1", ["order:RetriesExhausted:CRMServerError"]),
        ("c2", ["order:RetriesExhausted:CRMServerError"])]


async def test_a_recording_that_comes_after_the_upload_is_not_dropped_silently(
        harness: Harness, portal: Portal) -> None:
    record = "https://records.example.com/c1.mp3"
    await harness.deliver(call(1), call(2, recording_url=record))
    await harness.deliver(call(1, recording_url=record), call(2, recording_url=record))
    assert portal.calls["c1"].get("recordUrl") is None  # retailCRM keeps the first upload
    assert portal.calls["c2"]["recordUrl"] == record
    [(call_id, reason)] = harness.outlets.rejected  # a plain redelivery (c2) is no news
    assert call_id == "c1" and reason.startswith("late_recording: ")
    assert harness.acked == ["c1", "c2", "c1", "c2"]


def waiting_for_recordings(harness: Harness, seconds: int) -> None:
    harness.cfg = harness.cfg.model_copy(update={"options": harness.cfg.options.model_copy(
        update={"recording_wait_seconds": seconds})})


async def test_an_upload_waits_for_a_recording_that_comes_in_a_later_record(
        harness: Harness, portal: Portal) -> None:
    waiting_for_recordings(harness, 600)
    record = "https://records.example.com/c1.mp3"
    ended = fresh(1)
    await harness.deliver(ended)
    assert portal.calls == {} and harness.acked == [], "the upload waits, unacknowledged"
    assert len(portal.customers) == 1 and len(portal.orders) == 1, "the rest did not wait"
    # the same record again, now with its recording
    await harness.deliver(CallEvent.model_validate({
        **ended.model_dump(mode="json"), "recording_url": record}))
    assert portal.calls["c1"]["recordUrl"] == record
    assert harness.acked == ["c1", "c1"] and harness.outlets.rejected == []
    assert len(portal.customers) == 1 and len(portal.orders) == 1


async def test_a_recording_that_never_comes_delays_the_upload_only_so_long(
        harness: Harness, portal: Portal) -> None:
    waiting_for_recordings(harness, 1)
    harness.lane.start()
    await harness.lane.submit(harness.work(fresh(1, talk_seconds=0, wait_seconds=0), 1))
    await harness.lane.submit(harness.work(call(2), 2))  # hours old: nothing to wait for
    await wait_until(lambda: "c2" in portal.calls, "the upload of c2, which waits for nothing")
    # Acked once the lane has the CRM's answer, a moment after the double stored the call.
    await wait_until(lambda: harness.acked == ["c2"], "c2 acked after its upload")
    assert list(portal.calls) == ["c2"] and harness.acked == ["c2"]
    await wait_until(lambda: "c1" in portal.calls, "the upload of c1 once its wait is over")
    # Acked once the lane has the CRM's answer, a moment after the double stored the call.
    await wait_until(lambda: harness.acked == ["c2", "c1"], "c1 acked after its upload")
    await harness.lane.stop()
    assert "c1" in portal.calls and portal.calls["c1"].get("recordUrl") is None
    assert harness.acked == ["c2", "c1"]


@pytest.mark.parametrize("method", ["create_customer", "create_order", "create_task"])
async def test_a_create_answered_after_the_timeout_is_looked_up_not_repeated(
        harness: Harness, portal: Portal, monkeypatch: pytest.MonkeyPatch,
        method: str) -> None:
    """retailCRM made the entity, but its answer came too late for the client: the retry
    within the same delivery finds it instead of making a second one (or being refused)."""
    real = getattr(harness.client, method)
    late = [2]

    async def create_then_time_out(*args: Any, **kwargs: Any) -> Any:
        made = await real(*args, **kwargs)
        if late[0] > 0:
            late[0] -= 1
            raise e.CRMTransportError(f"retailCRM {method}: timed out", method=method)
        return made

    monkeypatch.setattr(harness.client, method, create_then_time_out)
    await harness.deliver(call(1, status="no_answer", talk_seconds=0))
    assert late == [1], "the first try timed out, the second found what it had made"
    assert (len(portal.customers), len(portal.orders), len(portal.tasks)) == (1, 1, 1)
    [customer_id] = portal.customers
    [order] = portal.orders.values()
    assert order["customer"]["id"] == customer_id
    assert harness.ledger.data["acme|c1"]["task"] == next(iter(portal.tasks))
    assert harness.acked == ["c1"] and harness.outlets.dead == []
    assert harness.outlets.rejected == []


async def test_a_second_record_of_a_call_with_other_content_goes_invalid_not_away(
        harness: Harness, portal: Portal) -> None:
    first = call(1)
    conflicting = call(1, talk_seconds=99)
    await harness.deliver(first, conflicting, first)  # one batch: the first record wins
    assert portal.calls["c1"]["duration"] == 30
    assert [(cid, reason.split(":")[0]) for cid, reason in harness.outlets.rejected] == [
        ("c1", "conflicting_record")]
    await harness.deliver(conflicting)  # and later, across batches
    assert [r.split(":")[0] for _, r in harness.outlets.rejected] == ["conflicting_record"] * 2
    await harness.deliver(first)  # the same record again is no conflict
    assert len(harness.outlets.rejected) == 2 and harness.acked.count("c1") == 5


class ReplayRunning:
    """A replay of the tenant runs: live works are held back for it, replayed ones go."""

    def __init__(self) -> None:
        self.held: list[int] = []

    def held_back(self, tenant_id: str, work: Work) -> bool:
        self.held.append(work.source.offset)
        return True

    async def recover_outage(self, tenant_id: str) -> bool:
        return True


async def test_live_events_wait_for_a_running_replay_which_delivers_them(
        harness: Harness, portal: Portal) -> None:
    hooks = ReplayRunning()
    harness.lane.hooks = hooks
    live = harness.work(call(1), offset=7)
    await harness.lane.deliver([live])
    assert hooks.held == [7] and harness.acked == ["c1"] and portal.calls == {}
    replayed = harness.work(call(1), offset=7)
    replayed.replayed = True
    await harness.lane.deliver([replayed])
    assert hooks.held == [7] and list(portal.calls) == ["c1"]


async def test_work_of_a_revoked_partition_is_dropped_unstarted(harness: Harness,
                                                                portal: Portal) -> None:
    gate = OffsetGate()
    lease = gate.read("calls", 0, 0, generation=1, stamp=0.0)
    work = harness.work(call(1))
    work.lease = lease
    work.ack = lease.settle
    gate.revoke([("calls", 0)])
    await harness.lane.deliver([work])
    assert portal.calls == {} and not lease.settled and not lease.started


async def test_a_pop_up_leaves_at_once_while_uploads_linger(harness: Harness,
                                                            portal: Portal) -> None:
    """The lane gathers uploads for a minute here; a pop-up must not wait for that, nor make
    the uploads gathered so far leave half-full (a call's records bring pop-ups all the time:
    uploads would go one or two to a request)."""
    harness.lane.linger = 60.0
    harness.lane.start()
    try:
        await harness.lane.submit(harness.work(call(1, direction="out"), 1))
        ringing = fresh(2, stage="started", status="in_progress")
        await harness.lane.submit(harness.work(ringing, 2))
        await wait_until(lambda: [e["callExternalId"] for e in portal.call_events] == ["c2"],
                         "the pop-up of c2 (a lane that lingered would hold it 60 s)")
        assert portal.calls == {}, "the upload goes on gathering"
        for n in range(3, 52):  # the upload fills up (50 calls): it leaves without the minute
            await harness.lane.submit(harness.work(call(n, direction="out"), n))
        await wait_until(lambda: len(portal.calls) == 50, "the full upload's 50 calls")
        assert by_method(harness.double)["/api/telephony/calls/upload"] == 1
    finally:
        await harness.lane.stop()


def _upload_sizes(harness: Harness) -> list[int]:
    """The number of calls in each `telephony/calls/upload` the harness's client makes."""
    sizes: list[int] = []
    upload_calls = harness.client.upload_calls

    async def counted(calls: Any) -> Any:
        sizes.append(len(calls))
        return await upload_calls(calls)

    harness.client.upload_calls = counted  # type: ignore[method-assign]
    return sizes


async def _trickle(harness: Harness, *, calls: int, gap: float, linger: float) -> list[int]:
    """`calls` outgoing calls submitted `gap` seconds apart to the running lane, until all
    settled; the calls in each upload."""
    sizes = _upload_sizes(harness)
    harness.lane.linger = linger
    harness.lane.start()
    try:
        for n in range(1, calls + 1):
            await harness.lane.submit(harness.work(call(n, direction="out"), n))
            await asyncio.sleep(gap)
        await wait_until(lambda: len(harness.acked) == calls, f"{calls} calls settled")
    finally:
        await harness.lane.stop()
    return sizes


async def test_calls_that_keep_coming_keep_their_batch_open(harness: Harness,
                                                            portal: Portal) -> None:
    """A batch leaves once no call came for a linger, not a linger after its first: 12 calls
    50 ms apart (0.6 s in all, the linger 0.5 s) go in one upload. (Real time on purpose:
    the gap between arrivals is what is tested; each gap is a tenth of the linger.)"""
    sizes = await _trickle(harness, calls=12, gap=0.05, linger=0.5)
    assert sizes == [12] and len(portal.calls) == 12


async def test_a_batch_that_keeps_receiving_calls_leaves_after_four_lingers(
        harness: Harness, portal: Portal) -> None:
    """Calls that never stop coming do not hold their batch for ever: with a linger of 0.1 s
    a batch leaves 0.4 s after its first call, though 30 calls come over 0.6 s or more."""
    sizes = await _trickle(harness, calls=30, gap=0.02, linger=0.1)
    assert len(sizes) >= 2 and sizes[0] < 30 and sum(sizes) == 30, sizes
    assert len(portal.calls) == 30


async def run_until(lane: TenantLane, works: list[Work], settled: Callable[[], bool],
                    what: str, **wait: Any) -> None:
    """The works queued before the lane runs (a backlog), then the lane run until `settled`."""
    for work in works:
        await lane.submit(work)
    lane.start()
    try:
        await wait_until(settled, what, **wait)
    finally:
        await lane.stop()


async def test_a_backlog_fills_the_leads_upload_before_it_splits_the_calls(
        harness: Harness, portal: Portal) -> None:
    """From a backlog, a batch takes calls past one call upload until its new callers fill a
    customers upload: 80 calls, 30 of them outgoing, make their 50 leads in one customers
    upload and one orders upload (batches of 50 calls made them in two of each), for one
    call upload more (the telephony budget is four times the general one)."""
    events = [call(n, direction="out") if n % 8 > 4 else call(n) for n in range(1, 81)]
    await run_until(harness.lane, [harness.work(e, n) for n, e in enumerate(events)],
                    lambda: len(harness.acked) == 80, "80 calls settled")
    assert len(portal.calls) == 80 and len(portal.customers) == len(portal.orders) == 50
    asked = by_method(harness.double)
    assert asked["/api/customers/upload"] == asked["/api/orders/upload"] == 1
    assert asked["/api/telephony/calls/upload"] == 2


async def test_a_backlog_s_call_uploads_are_full_but_for_its_end(harness: Harness,
                                                                 portal: Portal) -> None:
    """A batch cut where its leads fill their upload leaves calls past its last full call
    upload: with more queued they go with the next batch's. 300 calls, 189 of them new
    callers': 4 customers uploads, and every call upload full but the last two (cutting by
    leads alone left one partial upload a batch)."""
    events = [call(n, direction="out") if n % 8 > 4 else call(n) for n in range(1, 301)]
    sizes = _upload_sizes(harness)
    lane = TenantLane(tenant_id="acme", steps=harness.steps, outlets=harness.outlets,
                      linger=0.05, buffer=len(events))
    await run_until(lane, [harness.work(e, n) for n, e in enumerate(events)],
                    lambda: len(harness.acked) == 300, "300 calls settled", within=60,
                    detail=lambda: f"uploads {sizes}")
    assert len(portal.calls) == 300 and sum(sizes) == 300 and len(portal.customers) == 189
    assert sum(1 for n in sizes[:-2] if n < 50) == 0, sizes
    assert by_method(harness.double)["/api/customers/upload"] == 4


async def test_calls_put_off_to_the_next_batch_are_dropped_when_their_partition_moves(
        harness: Harness) -> None:
    gate = OffsetGate()
    works = []
    for n in (1, 2):
        work = harness.work(call(n), n)
        work.lease = gate.read("calls", 0, n, generation=1, stamp=0.0)
        assert work.lease.start()
        works.append(work)
    kept = harness.work(call(3), 3)  # replayed work: no lease, never stale
    held = HeldUploads()
    held.put_off([*works, kept])
    gate.revoke([("calls", 0)])
    assert held.drop_stale() == 2 and held.put_off_until_next() == [kept] and not held
    assert not any(w.lease is not None and w.lease.started for w in works)


async def test_calls_a_running_lane_put_off_are_dropped_unstarted_with_their_partition(
        harness: Harness, portal: Portal) -> None:
    """The 30 calls past a batch's full call upload wait (a minute's linger here) for the next
    batch; their partition moves meanwhile: they are dropped unstarted and unsettled, never
    uploaded by this worker (their next owner reads them from the commit point)."""
    gate = OffsetGate()
    lane = TenantLane(tenant_id="acme", steps=harness.steps, outlets=harness.outlets,
                      linger=60.0, buffer=100)
    works = []
    for n in range(1, 81):
        work = harness.work(call(n, direction="out") if n % 8 > 4 else call(n), n)
        work.lease = gate.read("calls", 0, n, generation=1, stamp=0.0)
        work.ack = work.lease.settle
        works.append(work)
        await lane.submit(work)
    lane.start()
    try:
        await wait_until(lambda: sum(w.lease.settled for w in works if w.lease) == 50,
                         "the full upload's 50 calls settled")
        gate.revoke([("calls", 0)])
        assert lane.drop_stale() == 30
        assert gate.running([("calls", 0)]) == 0  # the rebalance need not wait for them
    finally:
        await lane.stop()
    assert sorted(portal.calls) == sorted(f"c{n}" for n in range(1, 51))
    assert not any(w.lease.settled or w.lease.started for w in works[50:] if w.lease)


async def test_a_known_caller_s_call_fills_no_lead_s_place(harness: Harness,
                                                          portal: Portal) -> None:
    """A caller with a customer (found by an earlier lookup) makes no lead: their calls do not
    count towards a batch's leads, and 50 new callers still share one customers upload."""
    await harness.deliver(call(1000))  # the caller's customer is made; the lane knows it
    events = [call(1000, call_id=f"k{n}") if n % 3 == 0 else call(n) for n in range(1, 76)]
    await run_until(harness.lane, [harness.work(e, n) for n, e in enumerate(events, start=1)],
                    lambda: len(harness.acked) == 76, "76 calls settled")
    assert len(portal.customers) == 51
    assert by_method(harness.double)["/api/customers/upload"] == 1  # the first was one create


async def test_a_conflicting_record_of_a_missed_call_makes_no_task(harness: Harness,
                                                                   portal: Portal) -> None:
    """The first record says answered; a second of the same call says missed: no step of the
    second runs (it would make a call-back task for a call that was answered)."""
    answered = call(1)
    await harness.deliver(answered, call(1, status="no_answer", talk_seconds=0))
    await harness.deliver(call(1, status="busy", talk_seconds=0))
    assert portal.tasks == {} and portal.calls["c1"]["result"] == "answered"
    assert [r.split(":")[0] for _, r in harness.outlets.rejected] == ["conflicting_record"] * 2


async def test_a_later_record_with_another_recording_goes_invalid_not_away(
        harness: Harness, portal: Portal) -> None:
    first = call(1, recording_url="https://records.example.com/a.mp3")
    other = call(1, recording_url="https://records.example.com/b.mp3")
    await harness.deliver(first, other)  # in one batch
    await harness.deliver(other)  # and later
    assert portal.calls["c1"]["recordUrl"] == "https://records.example.com/a.mp3"
    assert [r.split(":")[0] for _, r in harness.outlets.rejected] == ["conflicting_record"] * 2


async def test_a_partition_revoked_mid_batch_stops_its_crm_writes_and_its_next_owner_adds_none(
        harness: Harness, portal: Portal) -> None:
    """A rebalance while a batch runs: the old owner makes no CRM request after the revoke
    (its next owner may already be at work), settles nothing, and the next owner, reading the
    same records again with the same ledger, completes them without a second task."""
    gate = OffsetGate()
    missed = [call(n, status="no_answer", talk_seconds=0) for n in (1, 2, 3)]
    works = []
    for n, event in enumerate(missed):
        lease = gate.read("calls", 0, n, generation=1, stamp=0.0)
        work = harness.work(event, n)
        work.lease, work.ack = lease, lease.settle
        works.append(work)
    create_task = harness.client.create_task

    async def create_then_revoke(*args: Any, **kwargs: Any) -> Any:
        made = await create_task(*args, **kwargs)
        gate.revoke([("calls", 0)])  # the rebalance lands while the first task is made
        return made

    harness.client.create_task = create_then_revoke  # type: ignore[method-assign]
    before = requests(portal, harness.double)
    await harness.lane.deliver(works)
    assert len(portal.tasks) == 1 and harness.outlets.dead == [] == harness.outlets.rejected
    assert not any(w.lease.settled or w.lease.started for w in works if w.lease is not None)
    assert gate.running([("calls", 0)]) == 0  # the rebalance's wait is over at once
    assert portal.calls == {}  # nothing uploaded for the revoked batch
    made_by_old_owner = requests(portal, harness.double) - before

    harness.client.create_task = create_task  # type: ignore[method-assign]
    next_owner = TenantLane(tenant_id="acme", steps=harness.steps, outlets=harness.outlets,
                            linger=0.05, buffer=100)
    again = []
    for n, event in enumerate(missed):
        lease = gate.read("calls", 0, n, generation=2, stamp=0.0)
        work = harness.work(event, n)
        work.lease, work.ack = lease, lease.settle
        again.append(work)
    await next_owner.deliver(again)
    texts = sorted(str(t.get("commentary")) for t in portal.tasks.values())
    assert len(portal.tasks) == 3 and len(set(texts)) == 3, texts
    assert sorted(portal.calls) == ["c1", "c2", "c3"]
    assert all(w.lease is not None and w.lease.settled for w in again)
    assert made_by_old_owner > 0


async def test_a_known_caller_costs_no_lookup_even_after_a_restart(
        harness: Harness, portal: Portal, crm_double: CRMDouble) -> None:
    """The ledger keeps which customer a caller is (after a lookup and after a create), so a
    known caller's answered call costs its share of an upload only — a restarted worker (an
    empty cache) included. A missed call still asks who the customer's manager is now."""
    await harness.deliver(call(1))  # a new lead: its customer is made
    lookups = ("acme", "/api/telephony/manager")
    asked = crm_double.state.by_method.get(lookups, 0)
    harness.steps.known_callers.clear()  # a restart: what was in memory is gone
    await harness.deliver(call(2, client_phone="+380501110001"))
    assert crm_double.state.by_method.get(lookups, 0) == asked
    assert len(portal.customers) == 1 and len(portal.orders) == 1
    assert sorted(portal.calls) == ["c1", "c2"]
    harness.steps.known_callers.clear()
    await harness.deliver(call(3, client_phone="+380501110001", status="no_answer",
                               talk_seconds=0))
    assert crm_double.state.by_method.get(lookups, 0) == asked + 1  # the task's performer
    assert len(portal.tasks) == 1 and len(portal.orders) == 1
    # No phone number in clear in the ledger's keys.
    assert not any("380501110001" in key for key in harness.ledger.data)


async def test_idle_lanes_and_their_clients_are_let_go_busy_and_broken_ones_stay(
        crm_double: CRMDouble, portal: Portal, harness: Harness) -> None:
    """Memory follows the tenants calling now: a quiet lane goes with its client, a lane
    with events queued or a key to probe stays, and a new event makes a fresh lane that
    delivers."""
    ledger = MemoryLedger()
    outlets = RecordingOutlets()
    registry = LaneRegistry(settings=CRMSettings(upload_linger_seconds=0.01), ledger=ledger,
                            outlets=outlets)
    try:
        cfg = config(crm_double)
        lane = registry.lane_for(cfg)
        assert len(registry.clients) == 1
        assert await registry.evict_idle(after=60.0) == 0  # not quiet long enough
        assert lane.health.broke(DeadLetter(reason=Reason.UNAUTHORIZED, broken=True))
        assert await registry.evict_idle(after=0.0) == 0  # it must probe its key
        assert lane.health.recovered()
        assert await registry.evict_idle(after=0.0) == 1
        assert registry.lanes == {} and len(registry.clients) == 0
        fresh = registry.lane_for(cfg)
        assert fresh is not lane
        acked: list[str] = []
        await fresh.submit(work_of(call(1, direction="out"), cfg, MAPPING, raw=b"{}",
                                   ack=lambda: acked.append("c1")))
        assert fresh.idle_since(float("inf")) == 0.0  # an event queued: not idle
        await wait_until(lambda: acked == ["c1"], "the fresh lane to deliver")
        assert "c1" in portal.calls and outlets.dead == [] == outlets.rejected
        # An operator's deactivation has nothing to probe: its lane goes, and the next lane
        # parks what comes, as the tenant-state table says.
        assert fresh.health.deactivated("by hand")
        await wait_until(lambda: fresh.idle_since(float("inf")) > 0, "the lane to settle")
        assert await registry.evict_idle(after=0.0) == 1 and registry.lanes == {}
        await registry.lane_for(cfg).submit(work_of(call(2, direction="out"), cfg, MAPPING,
                                                    offset=1, ack=lambda: acked.append("c2")))
        await wait_until(lambda: acked == ["c1", "c2"], "the deactivated tenant's call parked")
        assert "c2" not in portal.calls
        assert [(c, [a.reason for a in actions]) for c, actions in outlets.dead] == [
            ("c2", [Reason.DEACTIVATED])]
    finally:
        await registry.stop()


async def test_an_idle_lane_holds_no_call_it_finished(crm_double: CRMDouble,
                                                     portal: Portal) -> None:
    """A worker with calls for 1,000 tenants kept each lane's last batch (events, plans,
    payloads: 30 KB a tenant) until its next call came."""
    registry = LaneRegistry(settings=CRMSettings(upload_linger_seconds=0.01),
                            ledger=MemoryLedger(), outlets=RecordingOutlets())
    try:
        cfg = config(crm_double)
        acked: list[str] = []
        work = work_of(call(1, direction="out"), cfg, MAPPING, ack=lambda: acked.append("c1"))
        gone = weakref.ref(work)
        await registry.lane_for(cfg).submit(work)
        del work
        await wait_until(lambda: acked == ["c1"], "the call delivered")
        await wait_until(lambda: registry.lanes["acme"].idle_since(float("inf")) > 0,
                         "the lane idle")
        gc.collect()
        assert gone() is None, gc.get_referrers(gone())
    finally:
        await registry.stop()


async def test_a_timed_out_task_is_found_past_the_first_page(
        harness: Harness, portal: Portal, monkeypatch: pytest.MonkeyPatch) -> None:
    """A caller who already has over a hundred tasks of the same text for one performer: the
    look-up after a late answer reads on past the first page instead of making a second."""
    for n in range(130):
        portal.tasks[10_000 + n] = {
            "id": 10_000 + n, "text": "Missed call from +380501110001",
            "commentary": f"Call old-{n} at 10:00", "performerId": 27, "performer": 27,
            "complete": False}
    real = harness.client.create_task
    late = [1]

    async def create_then_time_out(*args: Any, **kwargs: Any) -> Any:
        made = await real(*args, **kwargs)
        if late[0] > 0:
            late[0] -= 1
            raise e.CRMTransportError("retailCRM /api/tasks/create: timed out",
                                      method="/api/tasks/create")
        return made

    monkeypatch.setattr(harness.client, "create_task", create_then_time_out)
    harness.steps.known_callers.clear()
    await harness.deliver(call(1, status="no_answer", talk_seconds=0))
    mine = [t for t in portal.tasks.values() if "Call c1 " in str(t.get("commentary"))]
    assert late == [0] and len(mine) == 1 and len(portal.tasks) == 131
    assert harness.acked == ["c1"] and harness.outlets.dead == []


# -- new leads in batches (customers/upload, orders/upload) ----------------------------------------

def by_method(double: CRMDouble) -> dict[str, int]:
    return {method: n for (portal, method), n in double.state.by_method.items()
            if portal == "acme"}


async def test_a_batch_s_new_leads_share_one_customers_upload_and_one_orders_upload(
        crm_double: CRMDouble, harness: Harness, portal: Portal) -> None:
    before = requests(portal, crm_double)
    await harness.deliver(call(1), call(2, status="no_answer", talk_seconds=0),
                          call(3, employee=None))
    assert requests(portal, crm_double) - before == 3 + 1 + 1 + 1 + 1  # lookups, uploads, task
    asked = by_method(crm_double)
    assert asked.get("/api/customers/upload") == 1 and asked.get("/api/orders/upload") == 1
    assert "/api/customers/create" not in asked and "/api/orders/create" not in asked
    managers = {c["externalId"]: c["managerId"] for c in portal.customers.values()}
    assert managers == {"cs-acme-380501110001": 27, "cs-acme-380501110002": 27,
                        "cs-acme-380501110003": 28}
    orders = {o["externalId"]: o["customer"]["externalId"] for o in portal.orders.values()}
    assert orders == {f"cs-acme-call-c{n}": f"cs-acme-38050111000{n}" for n in (1, 2, 3)}
    [task] = portal.tasks.values()
    assert task["performerId"] == 27 and task["customer"]["id"] == next(
        c["id"] for c in portal.customers.values() if c["externalId"].endswith("0002"))
    assert harness.outlets.dead == [] and sorted(harness.acked) == ["c1", "c2", "c3"]
    # Delivered again (a restart before the commit): nothing is asked, nothing made twice.
    asked_total = requests(portal, crm_double)
    await harness.deliver(call(1), call(2, status="no_answer", talk_seconds=0),
                          call(3, employee=None))
    assert requests(portal, crm_double) == asked_total
    assert (len(portal.customers), len(portal.orders), len(portal.tasks)) == (3, 3, 1)


async def test_a_caller_twice_in_one_batch_makes_one_customer_and_one_order(
        crm_double: CRMDouble, harness: Harness, portal: Portal) -> None:
    """Both calls are looked up before the customer exists: the second follows the first, and
    its task goes to the customer's manager (the first call's), not to its own employee's."""
    first = call(1, status="no_answer", talk_seconds=0, employee=None)  # the senior manager's
    again = call(2, status="no_answer", talk_seconds=0, client_phone=first.client_phone)
    await harness.deliver(first, again, call(3))
    assert len(portal.customers) == 2 and len(portal.orders) == 2
    customer = next(c for c in portal.customers.values()
                    if c["externalId"] == "cs-acme-380501110001")
    assert customer["managerId"] == 28
    assert {o["externalId"] for o in portal.orders.values()} == {"cs-acme-call-c1",
                                                                 "cs-acme-call-c3"}
    tasks = sorted(portal.tasks.values(), key=lambda t: t["id"])
    assert [(t["performerId"], t["customer"]["id"]) for t in tasks] == [
        (28, customer["id"]), (28, customer["id"])]
    assert harness.outlets.dead == [] and harness.outlets.rejected == []


async def test_a_key_without_the_upload_methods_makes_each_one_by_one(
        crm_double: CRMDouble, portal: Portal) -> None:
    """customers/upload and orders/upload are not among the setup guide's 16 methods: a key
    without them is no broken integration and no denied method, only a dearer one."""
    portal.keys["guide"] = ApiKey("guide", {m for m in portal.keys["acme-key"].methods
                                            if not m.endswith("/upload")
                                            or m.startswith("/api/telephony")}, "guide")
    h = Harness(crm_double, key="guide")
    await enable_telephony(h.client)
    await h.deliver(call(1), call(2))
    await h.deliver(call(3), call(4))
    await h.client.aclose()
    assert len(portal.customers) == 4 and len(portal.orders) == 4
    assert h.outlets.dead == [] and h.lane.broken is None and h.steps.denied == set()
    asked = by_method(crm_double)
    assert asked["/api/customers/upload"] == asked["/api/orders/upload"] == 1, \
        "each asked once, then done without"
    assert asked["/api/customers/create"] == 4 and asked["/api/orders/create"] == 4


async def test_an_upload_whose_answer_is_lost_after_the_write_makes_nothing_twice(
        crm_double: CRMDouble, harness: Harness, portal: Portal) -> None:
    for method in ("/api/customers/upload", "/api/orders/upload"):
        crm_double.state.faults.append(Fault(portal="acme", method=method, status=500,
                                             apply_first=True, remaining=1))
    await harness.deliver(call(1), call(2), call(3))
    assert len(portal.customers) == 3 and len(portal.orders) == 3
    assert harness.outlets.dead == [] and harness.outlets.rejected == []
    assert all(o["customer"].get("id") for o in portal.orders.values())


async def test_a_customer_made_by_a_lost_answer_is_found_in_the_calls_shop(
        crm_double: CRMDouble, harness: Harness, portal: Portal) -> None:
    """On a portal whose key sees two shops, retailCRM wants `site` to look a customer up by
    its external id: the look for what a lost answer made names the call's shop."""
    portal.sites["outlet"] = "Outlet"
    crm_double.state.faults.append(Fault(portal="acme", method="/api/customers/upload",
                                         status=500, apply_first=True, remaining=1))
    await harness.deliver(call(1), call(2))
    assert len(portal.customers) == 2 and len(portal.orders) == 2
    assert harness.outlets.dead == [] and harness.outlets.rejected == []
    assert by_method(crm_double).get("/api/customers/{externalId}", 0) >= 1


async def test_an_item_the_upload_refuses_is_found_or_refused_on_its_own(
        crm_double: CRMDouble, harness: Harness, portal: Portal) -> None:
    """A 460: the customer made before (by a try whose answer was lost) is found, not made
    again; the others of the batch are made."""
    payload = harness.work(call(2)).plan.customer
    assert payload is not None
    # Made by an earlier try, but not found by the caller's number (a number since edited).
    made = await harness.client.create_customer(payload.model_copy(update={"phones": []}))
    await harness.deliver(call(1), call(2), call(3))
    assert len(portal.customers) == 3 and len(portal.orders) == 3
    order2 = next(o for o in portal.orders.values() if o["externalId"] == "cs-acme-call-c2")
    assert order2["customer"]["id"] == made
    assert harness.outlets.dead == [] and harness.outlets.rejected == []


async def test_a_customer_the_upload_refuses_rejects_only_its_own_call(
        crm_double: CRMDouble, harness: Harness, portal: Portal) -> None:
    works = [harness.work(call(n), n) for n in (1, 2, 3)]
    bad = works[1].plan.customer
    assert bad is not None  # a manager the portal does not have: refused in the upload
    works[1].plan = dataclasses.replace(works[1].plan,
                                        customer=bad.model_copy(update={"managerId": 999}))
    await harness.lane.deliver(works)
    assert sorted(c["externalId"][-1] for c in portal.customers.values()) == ["1", "3"]
    [(call_id, reason)] = harness.outlets.rejected
    assert call_id == "c2" and reason.startswith("crm_rejected: customer:")
    assert by_method(crm_double)["/api/customers/create"] == 1, "the refused one, on its own"
    assert sorted(harness.acked) == ["c1", "c2", "c3"] and harness.outlets.dead == []


def _pop_ups_under_way(harness: Harness) -> list[tuple[str, str, str]]:
    """Each pop-up request of the harness's client as it starts and ends: (call, type, edge)."""
    seen: list[tuple[str, str, str]] = []
    call_event = harness.client.call_event

    async def watched(event: Any) -> Any:
        seen.append((event.callExternalId, event.type, "start"))
        try:
            return await call_event(event)
        finally:
            seen.append((event.callExternalId, event.type, "end"))

    harness.client.call_event = watched  # type: ignore[method-assign]
    return seen


def _most_at_once(seen: list[tuple[str, str, str]]) -> int:
    now = most = 0
    for _, _, edge in seen:
        now += 1 if edge == "start" else -1
        most = max(most, now)
    return most


async def test_a_slow_portal_gets_several_calls_pop_ups_at_once(
        crm_double: CRMDouble, harness: Harness, portal: Portal) -> None:
    """A portal answering each pop-up in 0.5 s: one at a time, a lane could show two a second
    whatever retailCRM's 40 allowed; ringing calls queued behind each other."""
    crm_double.state.faults.append(Fault(method="/api/telephony/call/event", latency=0.5,
                                         apply_first=True))
    seen = _pop_ups_under_way(harness)
    harness.lane.start()
    try:
        for n in range(1, MAX_ANNOUNCING + 3):
            await harness.lane.submit(harness.work(fresh(n, stage="started",
                                                         status="in_progress"), n))
        await wait_until(lambda: len(harness.acked) == MAX_ANNOUNCING + 2, "all acknowledged")
    finally:
        await harness.lane.stop()
    assert _most_at_once(seen) == MAX_ANNOUNCING
    assert sorted(e["callExternalId"] for e in portal.call_events) == \
        sorted(f"c{n}" for n in range(1, MAX_ANNOUNCING + 3))


async def test_a_call_s_hang_up_pop_up_waits_for_its_ringing_one(
        crm_double: CRMDouble, harness: Harness, portal: Portal) -> None:
    crm_double.state.faults.append(Fault(method="/api/telephony/call/event", latency=0.3,
                                         apply_first=True))
    seen = _pop_ups_under_way(harness)
    harness.lane.start()
    try:
        await harness.lane.submit(harness.work(fresh(1, stage="started",
                                                     status="in_progress"), 1))
        await harness.lane.submit(harness.work(fresh(1), 2))  # its end: answered
        await harness.lane.submit(harness.work(fresh(2, stage="started",
                                                     status="in_progress"), 3))
        await wait_until(lambda: len(harness.acked) == 3, "all three acknowledged")
    finally:
        await harness.lane.stop()
    assert seen.index(("c1", "in", "end")) < seen.index(("c1", "hangup", "start"))
    assert seen.index(("c2", "in", "start")) < seen.index(("c1", "in", "end")), \
        "another call's pop-up did not wait"
    assert [(e["callExternalId"], e["type"]) for e in portal.call_events
            if e["callExternalId"] == "c1"] == [("c1", "in"), ("c1", "hangup")]
