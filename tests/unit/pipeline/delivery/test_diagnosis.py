"""Self-diagnosis against the double: one task a problem, once across redelivery and a crash."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY

from pipeline.config import CRMSettings
from pipeline.delivery.diagnosis import CREATE, unmapped_extension
from pipeline.delivery.ledger import MemoryLedger
from pipeline.devtools.crmdouble.server import CRMDouble
from pipeline.devtools.crmdouble.state import ApiKey, Fault, Portal
from schemas import CallEvent, EmployeeLink, EmployeeMapping, IntegrationConfig
from tests.crmlane import Crash, CrashableLedger, enable_telephony, quick_lane, work_of
from tests.unit.pipeline.fakes import Outlets

NOW = datetime.now(UTC).replace(microsecond=0)
MAPPING = EmployeeMapping(tenant_id="acme", senior_manager_id=28,
                          employees={"emp-1": EmployeeLink(crm_user_id=27, extension="101")})


def config(portal_url: str, *, on: bool = True, key: str = "acme-key",
           site: str = "main") -> IntegrationConfig:
    return IntegrationConfig.model_validate({
        "tenant_id": "acme", "portal_url": portal_url, "admin_email": "admin@acme.example.com",
        "site_code": site, "api_key": key, "timezone": "Europe/Kyiv",
        "options": {"self_diagnosis": on}})


def call(call_id: str, n: int = 0, *, employee: str = "emp-5", ext: str | None = "105",
         **changes: Any) -> CallEvent:
    base: dict[str, Any] = {
        "call_id": call_id, "tenant_id": "acme",
        "started_at": (NOW - timedelta(hours=1) + timedelta(minutes=n)).isoformat(),
        "direction": "in", "client_phone": f"+38050123{4500 + n:04d}", "status": "answered",
        "employee": {"id": employee, "extension": ext}, "talk_seconds": 30,
        "wait_seconds": 5, "tracking_number": "+380443334400"}
    return CallEvent.model_validate({**base, **changes})


def made(kind: str) -> float:
    return REGISTRY.get_sample_value("callsync_diagnosis_tasks_total", {"problem": kind}) or 0.0


def failed(kind: str) -> float:
    return REGISTRY.get_sample_value("callsync_diagnosis_failures_total",
                                     {"problem": kind}) or 0.0


class Harness:
    """A lane as the worker runs it; `deliver` reports as intake does (delivery/intake.py)."""

    def __init__(self, double: CRMDouble, ledger: MemoryLedger | None = None, *,
                 on: bool = True, key: str = "acme-key", site: str = "main") -> None:
        self.double = double
        self.ledger = ledger if ledger is not None else CrashableLedger()
        self.outlets = Outlets()
        self.cfg = config(double.portal_url("acme"), on=on, key=key, site=site)
        self.client, self.steps, self.lane = quick_lane(
            self.cfg, self.ledger, self.outlets,
            settings=CRMSettings(max_attempts=3, backoff_base_seconds=0.01,
                                 backoff_max_seconds=0.02, upload_linger_seconds=0.05))
        self.lane.diagnosis.configure(self.cfg, MAPPING.senior_manager_id)

    async def deliver(self, *events: CallEvent) -> None:
        works = []
        for n, event in enumerate(events):
            employee = event.employee
            if employee is not None and employee.id not in MAPPING.employees:
                self.lane.diagnosis.report(unmapped_extension(
                    employee.id, employee.extension, "not linked to a CRM manager"))
            works.append(work_of(event, self.cfg, MAPPING, n))
        await self.lane.deliver(works)

    def requests(self) -> int:
        return sum(n for (portal, _), per in self.double.state.requests.items()
                   if portal == "acme" for n in per.values())

    def delivered(self, call_id: str) -> bool:
        return bool(self.ledger.facts("acme", call_id).get("done_ended"))

    async def close(self) -> None:
        await self.client.aclose()


@pytest.fixture
async def harness(crm_double: CRMDouble, portal: Portal) -> AsyncIterator[Harness]:
    h = Harness(crm_double)
    await activate(h)
    yield h
    await h.close()


async def activate(h: Harness) -> None:
    await enable_telephony(h.client)


def diagnosis_tasks(portal: Portal) -> list[dict[str, Any]]:
    return [t for t in portal.tasks.values() if t["text"].startswith("callsync: ")]


async def test_an_unlinked_extension_makes_one_task_for_the_senior_manager_across_many_calls(
        harness: Harness, portal: Portal) -> None:
    before = made("unmapped_extension")
    await harness.deliver(call("c1", 1), call("c2", 2))
    await harness.deliver(call("c3", 3), call("c4", 4, status="no_answer", talk_seconds=0))
    [task] = diagnosis_tasks(portal)
    assert task["performerId"] == 28 and "extension 105" in task["text"]
    assert "employees page" in task["commentary"] and "[callsync #diagnosis/" in \
        task["commentary"]
    assert made("unmapped_extension") == before + 1
    assert all(harness.delivered(c) for c in ("c1", "c2", "c3", "c4"))
    assert harness.outlets.dead == []
    # A linked employee's calls are no problem; another unlinked one is another problem.
    await harness.deliver(call("c5", 5, employee="emp-1", ext="101"),
                          call("c6", 6, employee="emp-7", ext="107"))
    assert sorted(t["text"].split(" ")[3] for t in diagnosis_tasks(portal)) == ["105", "107"]


async def test_a_redelivery_on_a_fresh_worker_asks_nothing_about_an_open_task(
        harness: Harness, portal: Portal, crm_double: CRMDouble) -> None:
    await harness.deliver(call("c1", 1))
    assert len(diagnosis_tasks(portal)) == 1
    restarted = Harness(crm_double, harness.ledger)  # same ledger, nothing in memory
    try:
        asked = restarted.requests()
        await restarted.lane.diagnosis.run()
        restarted.lane.diagnosis.report(unmapped_extension("emp-5", "105", "x"))
        await restarted.lane.diagnosis.run()
        assert restarted.requests() == asked, "a known open task costs no request"
        await restarted.deliver(call("c1", 1), call("c2", 2))
        assert len(diagnosis_tasks(portal)) == 1
    finally:
        await restarted.close()


async def test_a_crash_between_the_intent_and_the_answer_makes_no_second_task(
        harness: Harness, portal: Portal, crm_double: CRMDouble) -> None:
    create = harness.client.create_task

    async def create_then_die(*args: Any, **kwargs: Any) -> int:
        await create(*args, **kwargs)
        raise Crash

    harness.client.create_task = create_then_die  # type: ignore[method-assign]
    with pytest.raises(Crash):
        await harness.deliver(call("c1", 1))
    assert len(diagnosis_tasks(portal)) == 1
    assert isinstance(harness.ledger, CrashableLedger)
    harness.ledger.crash()
    restarted = Harness(crm_double, harness.ledger)
    try:
        await restarted.deliver(call("c1", 1), call("c2", 2))
        [task] = diagnosis_tasks(portal)
        [facts] = [v for k, v in harness.ledger.data.items() if "#diagnosis/" in k]
        assert facts["task"] == task["id"] and facts["pending"] is False
    finally:
        await restarted.close()


async def test_a_lost_answer_to_the_create_is_found_by_its_marker(
        harness: Harness, portal: Portal, crm_double: CRMDouble) -> None:
    crm_double.state.faults.append(Fault(portal="acme", method=CREATE, status=500,
                                         apply_first=True, remaining=1))
    await harness.deliver(call("c1", 1))
    assert len(diagnosis_tasks(portal)) == 1


async def test_a_completed_task_is_made_anew_only_when_the_problem_recurs(
        harness: Harness, portal: Portal) -> None:
    await harness.deliver(call("c1", 1))
    [first] = diagnosis_tasks(portal)
    first["complete"] = True
    await harness.deliver(call("c2", 2))
    assert len(diagnosis_tasks(portal)) == 1, "checked at most every recheck interval"
    harness.lane.diagnosis.recheck_seconds = 0.0
    harness.lane.diagnosis._quiet.clear()
    await harness.deliver(call("c3", 3))
    [_, second] = diagnosis_tasks(portal)
    assert not second["complete"] and second["commentary"] != first["commentary"]
    await harness.deliver(call("c4", 4))  # open: looked at, nothing made
    assert len(diagnosis_tasks(portal)) == 2


async def test_without_the_option_nothing_is_made_or_asked(
        crm_double: CRMDouble, portal: Portal) -> None:
    h = Harness(crm_double, on=False)
    try:
        await activate(h)
        await h.deliver(call("c1", 1), call("c2", 2))
        assert diagnosis_tasks(portal) == [] and h.delivered("c1")
        assert h.lane.diagnosis._due == {}
    finally:
        await h.close()


async def test_a_denied_method_is_named_with_where_to_allow_it(
        crm_double: CRMDouble, portal: Portal) -> None:
    portal.keys["narrow"] = ApiKey(key="narrow", label="narrow", methods=set(
        portal.keys["acme-key"].methods) - {"/api/telephony/manager"})
    h = Harness(crm_double, key="narrow")
    try:
        await activate(h)
        before = made("access_denied")
        await h.deliver(call("c1", 1, employee="emp-1", ext="101", status="no_answer",
                             talk_seconds=0))
        await h.deliver(call("c2", 2, employee="emp-1", ext="101", status="no_answer",
                             talk_seconds=0))
        [task] = diagnosis_tasks(portal)
        assert "/api/telephony/manager" in task["text"] and task["performerId"] == 28
        assert "Administration → Integrations → API access keys" in task["commentary"]
        assert made("access_denied") == before + 1
        assert len(h.outlets.dead) == 2, "the calls are parked as ever"
    finally:
        await h.close()


async def test_a_key_without_tasks_create_is_not_asked_to_make_one(
        crm_double: CRMDouble, portal: Portal) -> None:
    portal.keys["narrow"] = ApiKey(key="narrow", label="narrow",
                                   methods=set(portal.keys["acme-key"].methods) - {CREATE})
    h = Harness(crm_double, key="narrow")
    try:
        await activate(h)
        await h.deliver(call("m1", 1, status="no_answer", talk_seconds=0))  # its task: denied
        assert CREATE in h.steps.denied and portal.tasks == {}
        await h.deliver(call("c2", 2))  # unlinked 105: a problem, but no task can be made
        assert portal.tasks == {} and h.delivered("c2")
        refused = crm_double.state.requests[("acme", "narrow")]
        assert refused.get(403) == 1, "the diagnosis never tried tasks/create"
    finally:
        await h.close()


async def test_a_diagnosis_task_that_cannot_be_made_holds_no_call_back(
        harness: Harness, portal: Portal, crm_double: CRMDouble) -> None:
    crm_double.state.faults.append(Fault(portal="acme", method=CREATE, status=500))
    before = failed("unmapped_extension")
    await harness.deliver(call("c1", 1), call("c2", 2))
    assert diagnosis_tasks(portal) == [] and failed("unmapped_extension") == before + 1
    assert harness.delivered("c1") and harness.delivered("c2")
    assert harness.outlets.dead == [] and harness.outlets.invalids == []


async def test_a_shop_code_the_portal_refuses_is_a_problem_of_its_own(
        crm_double: CRMDouble, portal: Portal) -> None:
    h = Harness(crm_double, site="gone")
    try:
        await activate(h)
        await h.deliver(call("m1", 1, employee="emp-1", ext="101", status="no_answer",
                             talk_seconds=0))
        [task] = diagnosis_tasks(portal)
        assert '"gone"' in task["text"] and "Administration → Stores" in task["commentary"]
        assert made("site") >= 1
    finally:
        await h.close()
