"""A lane looks a batch's callers up while the batch before it makes its leads — never a caller
of that batch, whose lookup must see the customer it made."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from pipeline.crm.client import RetailCRMClient
from pipeline.delivery.health import TenantHealth
from pipeline.delivery.ledger import MemoryLedger
from pipeline.delivery.rounds import rounds
from pipeline.delivery.steps import Steps
from pipeline.delivery.tenantlane import TenantLane
from pipeline.delivery.tenantstate import StateStore
from pipeline.devtools.crmdouble.server import CRMDouble
from pipeline.devtools.crmdouble.state import Fault, Portal
from schemas import CallEvent, EmployeeLink, EmployeeMapping, IntegrationConfig
from tests.crmlane import QUICK, enable_telephony, work_of
from tests.integration.support import RecordingOutlets
from tests.waiting import wait_until

NOW = datetime.now(UTC)
MAPPING = EmployeeMapping(tenant_id="acme", senior_manager_id=28,
                          employees={"emp-1": EmployeeLink(crm_user_id=27, extension="101")})
LOOKUP = "/api/telephony/manager"


class Recorder(httpx.AsyncBaseTransport):
    """Every request's path, phone (for lookups), and when it left and was answered."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.seen: list[dict[str, Any]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        path = "/api" + request.url.path.partition("/api/v5")[2]  # the portal's prefix off
        entry: dict[str, Any] = {"path": path, "sent": time.monotonic(), "phone":
                                 parse_qs(request.url.query.decode()).get("phone", [""])[0]}
        self.seen.append(entry)
        response = await self.inner.handle_async_request(request)
        await response.aread()
        entry["answered"] = time.monotonic()
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()

    def of(self, path: str, phone: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self.seen if e["path"] == path and phone in (None, e["phone"])]


def call(n: int, phone: str) -> CallEvent:
    return CallEvent.model_validate({
        "call_id": f"c{n}", "tenant_id": "acme",
        "started_at": (NOW - timedelta(hours=1) + timedelta(minutes=n)).isoformat(),
        "direction": "in", "client_phone": phone, "status": "answered",
        "employee": {"id": "emp-1", "extension": "101"}, "talk_seconds": 30,
        "wait_seconds": 5})


class Lane:
    def __init__(self, double: CRMDouble) -> None:
        self.cfg = IntegrationConfig.model_validate({
            "tenant_id": "acme", "portal_url": double.portal_url("acme"),
            "admin_email": "admin@acme.example.com", "site_code": "main",
            "api_key": "acme-key", "timezone": "Europe/Kyiv"})
        self.recorder = Recorder()
        self.client = RetailCRMClient(base_url=self.cfg.portal_url.unicode_string(),
                                      api_key=self.cfg.api_key, transport=self.recorder)
        steps = Steps(client=self.client, ledger=MemoryLedger(), settings=QUICK,
                      health=TenantHealth(StateStore({}), "acme"),
                      clock=lambda: datetime.now(UTC))
        self.lane = TenantLane(tenant_id="acme", steps=steps, outlets=RecordingOutlets(),
                               linger=0.05, buffer=100)
        self.acked: list[str] = []

    async def submit(self, event: CallEvent, offset: int) -> None:
        await self.lane.submit(work_of(event, self.cfg, MAPPING, offset,
                                       ack=lambda: self.acked.append(event.call_id)))


@pytest.fixture
async def lane(crm_double: CRMDouble, portal: Portal) -> AsyncIterator[Lane]:
    it = Lane(crm_double)
    await enable_telephony(it.client)
    yield it
    await it.lane.stop()
    await it.client.aclose()


async def test_the_next_batch_is_looked_up_while_this_one_makes_its_leads(
        lane: Lane, crm_double: CRMDouble, portal: Portal) -> None:
    a, b, c, d = (f"+38050222{n:04d}" for n in range(4))
    # The first batch's customers take a while to be made.
    crm_double.state.faults.append(Fault(portal="acme", method="/api/customers/upload",
                                         latency=0.8, remaining=1))
    lane.lane.start()
    for n, phone in enumerate((a, b, c), start=1):
        await lane.submit(call(n, phone), n)
    await wait_until(lambda: lane.recorder.of("/api/customers/upload"),
                     "the first batch making its customers", within=10,
                     detail=lambda: repr([e["path"] for e in lane.recorder.seen]))
    # While they are being made: A calls again, and a new caller D.
    await lane.submit(call(4, a), 4)
    await lane.submit(call(5, d), 5)
    await wait_until(lambda: len(lane.acked) == 5, "every call acked", within=15)

    upload = lane.recorder.of("/api/customers/upload")[0]
    looked_up_d = lane.recorder.of(LOOKUP, d)[0]
    assert looked_up_d["sent"] < upload["answered"]  # D's lookup did not wait for the leads
    # A's second call waited for the customer its first call made: looked up once, one lead.
    assert len(lane.recorder.of(LOOKUP, a)) == 1
    orders = {o["externalId"]: o for o in portal.orders.values()}
    assert len(orders) == 4
    assert len({o["customer"]["id"] for o in orders.values()}) == 4
    assert not [x for x in orders if "c4" in x]
    assert sorted(lane.acked) == ["c1", "c2", "c3", "c4", "c5"]
    assert len(portal.calls) == 5


def test_rounds_hold_one_call_of_a_caller_each() -> None:
    cfg = IntegrationConfig.model_validate({
        "tenant_id": "acme", "portal_url": "https://acme.retailcrm.example",
        "admin_email": "admin@acme.example.com", "site_code": "main", "api_key": "k",
        "timezone": "Europe/Kyiv"})
    calls = [call(1, "+380501110001"), call(2, "+380501110002"), call(3, "+380501110001"),
             call(4, "+380501110001")]
    works = [work_of(e, cfg, MAPPING, n) for n, e in enumerate(calls)]
    assert [[w.plan.call_id for w in r] for r in rounds(works)] == [
        ["c1", "c2"], ["c3"], ["c4"]]
