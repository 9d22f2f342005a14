"""The fault suite's short form: each scenario of pipeline/devtools/chaos on 300 calls over 10
tenants, and the double's hostile answers, hostile records and the golden comparison it
relies on."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from pipeline.crm import errors as e
from pipeline.crm.client import RetailCRMClient
from pipeline.devtools.chaos.golden import Golden, compare
from pipeline.devtools.chaos.hostile import with_hostile
from pipeline.devtools.chaos.report import ScenarioReport, table
from pipeline.devtools.chaos.runner import SHORT, run_scenario
from pipeline.devtools.chaos.scenarios import SCENARIOS
from pipeline.devtools.chaos.workload import workload
from pipeline.devtools.crmdouble.server import CRMDouble
from pipeline.devtools.crmdouble.state import Portal
from pipeline.devtools.localkafka import LocalKafka
from pipeline.devtools.samples import sample_tenants
from schemas.call_event import CallEvent

pytestmark = pytest.mark.chaos

EVENTS, TENANTS, SEED = 300, 10, 7
# Scenarios CI's short form leaves out because they still lose, duplicate or misattribute in
# some runs (see issue #9's notes); `python -m pipeline chaos` runs every scenario. None now: the
# losses of kill, rebalance, broker-kill and revoke-replay were records Faust never handed out,
# which the hole filler now reads (pipeline/streams/holes.py).
STILL_FAILING: set[str] = set()
TASK = {"text": "Call back", "performerId": 27}


def held(report: ScenarioReport) -> None:
    """callsync's promise, one assertion per part, each failing with the whole report."""
    summary = table([report]) + "\n" + json.dumps(report.details, default=str)[:4000]
    assert report.error is None, summary
    assert report.lost == 0, summary
    assert report.total("duplicated") == 0, summary
    assert report.total("misattributed") == 0, summary
    assert report.total("extra") == 0, summary
    assert report.worker_exits == [], summary
    assert report.crashes == 0, summary
    assert report.passed, summary


@pytest.mark.kafka
@pytest.mark.timeout(420)
@pytest.mark.parametrize("name", [n for n, s in SCENARIOS.items()
                                  if not s.own_broker and n not in STILL_FAILING])
async def test_every_call_ends_delivered_once_and_attributed_right_under(
        name: str, kafka_bootstrap: str, tmp_path: Path) -> None:
    held(await run_scenario(SCENARIOS[name], bootstrap=kafka_bootstrap, events=EVENTS,
                            tenants=TENANTS, seed=SEED, knobs=SHORT, workdir=tmp_path / name))


@pytest.mark.kafka
@pytest.mark.timeout(420)
@pytest.mark.parametrize("name", [n for n, s in SCENARIOS.items()
                                  if s.own_broker and n not in STILL_FAILING])
async def test_every_call_ends_delivered_once_and_attributed_right_across_a_broker_restart(
        name: str, chaos_broker: LocalKafka, tmp_path: Path) -> None:
    held(await run_scenario(SCENARIOS[name], bootstrap=chaos_broker.bootstrap_servers,
                            events=EVENTS, tenants=TENANTS, seed=SEED, knobs=SHORT,
                            workdir=tmp_path / name, broker=chaos_broker))


# -- the double's hostile answers ---------------------------------------------------------------

def client(double: CRMDouble, **kw: Any) -> RetailCRMClient:
    return RetailCRMClient(base_url=double.portal_url("acme"), api_key="acme-key", **kw)


async def fault(double: CRMDouble, **spec: Any) -> None:
    async with httpx.AsyncClient() as http:
        (await http.post(f"{double.url}/_admin/faults", json=spec)).raise_for_status()


async def test_a_write_applied_first_is_made_and_answered_after_the_timeout(
        crm_double: CRMDouble, portal: Portal) -> None:
    await fault(crm_double, portal="acme", method="/api/tasks/create", apply_first=True,
                latency=0.8, count=1)
    async with client(crm_double, timeout=0.3) as crm:
        with pytest.raises(e.CRMTransportError, match="timed out"):
            await crm.request("POST", "tasks/create", method="/api/tasks/create",
                              form={"task": TASK})
        assert len(portal.tasks) == 1, "the write was made although its answer came late"
        await crm.request("POST", "tasks/create", method="/api/tasks/create",
                          form={"task": TASK})  # the fault was used up: answered at once
    assert len(portal.tasks) == 2


async def test_a_malformed_answer_says_success_and_nothing_else(
        crm_double: CRMDouble, portal: Portal) -> None:
    await fault(crm_double, portal="acme", malformed=True, count=1)
    async with httpx.AsyncClient() as http:
        r = await http.get(crm_double.portal_url("acme") + "/api/v5/users",
                           headers={"X-API-KEY": "acme-key"})
    assert r.status_code == 200 and r.json() == {"success": True}
    assert portal.users, "nothing was changed"


async def test_a_huge_answer_is_refused_by_the_client_at_its_cap(
        crm_double: CRMDouble, portal: Portal) -> None:
    await fault(crm_double, portal="acme", huge_bytes=12 * 1024 * 1024, count=1)
    async with client(crm_double) as crm:
        with pytest.raises(e.CRMResponseTooLarge):
            await crm.users()
        assert (await crm.users()).users, "the next answer is the real one"


async def test_a_dripping_answer_arrives_whole_but_late(
        crm_double: CRMDouble, portal: Portal) -> None:
    await fault(crm_double, portal="acme", method="/api/credentials", drip_seconds=0.6,
                count=2)
    async with client(crm_double, timeout=0.2) as crm:
        with pytest.raises(e.CRMTransportError, match="timed out"):
            await crm.credentials()
    async with client(crm_double, timeout=5) as crm:
        assert (await crm.credentials()).credentials, "slow, whole and well-formed"


async def test_faults_are_listed_and_cleared_per_portal(crm_double: CRMDouble,
                                                        portal: Portal) -> None:
    await fault(crm_double, portal="acme", status=500)
    await fault(crm_double, portal="globex", malformed=True)
    async with httpx.AsyncClient(base_url=f"{crm_double.url}/_admin") as http:
        assert [f["portal"] for f in (await http.get("/faults")).json()] == ["acme", "globex"]
        cleared = await http.delete("/faults", params={"portal": "acme"})
        assert cleared.json() == {"faults": 1}
        assert [f["portal"] for f in (await http.get("/faults")).json()] == ["globex"]


# -- hostile records and the golden --------------------------------------------------------------

def test_every_hostile_record_breaks_the_contract_and_the_same_seed_draws_the_same() -> None:
    tenants = sample_tenants(4)
    ids = [t.tenant_id for t in tenants]
    end = datetime(2026, 11, 25, 18, 0, tzinfo=UTC)
    load = with_hostile(workload(tenants, 100, seed=3, end=end), 300, seed_value=3,
                        tenant_ids=ids, max_string=20_000)
    again = with_hostile(workload(tenants, 100, seed=3, end=end), 300, seed_value=3,
                         tenant_ids=ids, max_string=20_000)
    assert [(i.key, i.value) for i in load.items] == [(i.key, i.value) for i in again.items]
    assert load.hostile == 300 and len(load.events) == 100
    seen: dict[str, bytes] = {}
    kinds = set()
    for item in load.items:
        if item.event is not None:
            seen[item.event["call_id"]] = item.value or b""
            continue
        kinds.add(item.kind)
        if item.kind == "conflict":
            event = json.loads(item.value or b"")
            assert event["call_id"] in seen and seen[event["call_id"]] != item.value
            continue
        try:
            parsed = CallEvent.model_validate_json(item.value or b"")
        except ValidationError:
            continue
        assert item.key != parsed.tenant_id.encode() or parsed.tenant_id not in ids, item
    assert len(kinds) >= 10, kinds


def test_the_comparison_tells_lost_duplicated_misattributed_and_extra_apart() -> None:
    golden = Golden("acme", calls={"c1": ("answered", 101, None), "c2": ("no answer", None, "9")},
                    customers={"+1": 101}, orders={"+1": ("c1", 101)},
                    tasks={"c2": (101, "+1")})
    snapshot = {
        "calls": [{"externalId": "c1", "result": "answered", "userId": 150},
                  {"externalId": "c9", "result": "busy"}],
        "customers": [{"id": 1, "phones": [{"number": "+1"}], "managerId": 150}],
        "orders": [{"externalId": "cs-acme-call-c2", "phone": "+1", "managerId": 101,
                    "customer": {"id": 1}}],
        "tasks": [{"commentary": "Call c2 at 10:00", "performerId": 101, "phone": "+1"},
                  {"commentary": "Call c2 at 10:00", "performerId": 101, "phone": "+1"}],
    }
    found = {kind: (t.lost, t.duplicated, t.misattributed, t.extra)
             for kind, t in compare(golden, snapshot).items()}
    assert found == {"calls": (1, 0, 1, 1), "customers": (0, 0, 1, 0),
                     "orders": (0, 0, 1, 0), "tasks": (0, 1, 0, 0)}
