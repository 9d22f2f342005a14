"""The client's pacing against the double: the double never has to answer 503."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from pipeline.crm.client import RetailCRMClient
from pipeline.crm.ratelimit import Slot
from pipeline.devtools.crmdouble.admin import UserSpec, add_user
from pipeline.devtools.crmdouble.server import CRMDouble
from pipeline.devtools.crmdouble.state import ALL_METHODS, ApiKey, Portal
from tests.integration.support import MODULE, client


@pytest.fixture
def crm_double() -> Iterator[CRMDouble]:
    """The double on an event loop and a thread of its own, as a portal is: it counts a request
    when the request arrives, not when this test's loop, busy with the client's hundred
    concurrent calls, gets round to handling it (that delay varies by more than the pacing's
    guard on a loaded machine, and it is the test's, not the network's)."""
    double = CRMDouble()
    double.start_in_thread()
    yield double
    double.stop_thread()


async def test_paging_through_users_within_the_rate_limit(crm_double: CRMDouble,
                                                          portal: Portal) -> None:
    for n in range(230):
        add_user(portal, UserSpec(firstName=f"U{n}"))
    async with client(crm_double) as crm:
        seen: list[int] = []
        page = 1
        while True:
            result = await crm.users(page=page, limit=20)
            seen += [u.id for u in result.users]
            if page >= result.pagination.totalPageCount:
                break
            page += 1
    assert len(seen) == len(set(seen)) == 234
    assert crm_double.state.stats()["acme"]["by_status"] == {"200": 12}


async def test_pacing_keeps_the_double_from_ever_answering_503(crm_double: CRMDouble,
                                                              portal: Portal) -> None:
    async with client(crm_double) as crm:
        await asyncio.gather(*(crm.user_groups() for _ in range(25)))
        await crm.edit_integration_module(MODULE)
        await asyncio.gather(*(crm.telephony_manager("+380501112233") for _ in range(90)))
    by_status = crm_double.state.stats()["acme"]["by_status"]
    assert by_status == {"200": 116}


async def test_the_pacing_hears_when_each_request_left_and_when_its_answer_came(
        crm_double: CRMDouble, portal: Portal, monkeypatch: pytest.MonkeyPatch) -> None:
    """httpcore's trace names the moments the pacing reads over a real connection: the
    request's headers and body written, and the answer's headers back (by then the portal had
    counted the request, so the next second starts no later)."""
    marks: list[tuple[str, float]] = []
    real_sent, real_answered = Slot.sent, Slot.answered

    def sent(self: Slot, at: float) -> None:
        marks.append(("sent", at))
        real_sent(self, at)

    def answered(self: Slot, at: float) -> None:
        marks.append(("answered", at))
        real_answered(self, at)

    monkeypatch.setattr(Slot, "sent", sent)
    monkeypatch.setattr(Slot, "answered", answered)
    async with client(crm_double) as crm:
        for _ in range(3):
            await crm.user_groups()
    assert [name for name, _ in marks] == ["sent", "sent", "answered"] * 3  # headers, body
    assert [at for _, at in marks] == sorted(at for _, at in marks)


async def test_requests_waiting_for_a_pooled_connection_keep_their_places(
        crm_double: CRMDouble, portal: Portal) -> None:
    """Ten pop-ups answered 1.6 s late hold all of the portal's pooled connections; twenty
    general requests wait for one. Each kept its place in the pacing while it waited: counted
    from when it was let through, the first ten had lapsed before they left, and went out in
    the same second as the next ten (the double answered ten 503s)."""
    from pipeline.crm.transport import PORTAL_CONNECTIONS, SharedTransport
    from pipeline.devtools.crmdouble.state import Fault
    from schemas.crm import CallEventPayload

    transport = SharedTransport()
    crm = RetailCRMClient(base_url=crm_double.portal_url("acme"), api_key="acme-key",
                          transport=transport)
    event = CallEventPayload(phone="+380501112233", type="in", codes=["101"])
    try:
        await crm.edit_integration_module(MODULE)
        crm_double.state.faults.append(Fault(portal="acme", latency=1.6,
                                             method="/api/telephony/call/event"))
        popups = [asyncio.ensure_future(crm.call_event(event))
                  for _ in range(PORTAL_CONNECTIONS)]
        await asyncio.sleep(0.05)
        await asyncio.gather(*(crm.credentials() for _ in range(20)))
        await asyncio.gather(*popups)
    finally:
        await transport.close()
    by_status = crm_double.state.stats()["acme"]["by_status"]
    assert by_status == {"200": 1 + 20 + PORTAL_CONNECTIONS}


async def test_two_tenants_keys_on_one_portal_share_its_pace(crm_double: CRMDouble,
                                                             portal: Portal) -> None:
    """retailCRM counts per key and "from one IP": two tenants with keys of their own on one
    portal are paced together on a worker (each paced alone, they sent 20 a second, and the
    double, counting per address too, answered 503). Their pacing goes with their clients."""
    from pipeline.config import CRMSettings
    from pipeline.delivery.lanes import LaneRegistry
    from pipeline.delivery.ledger import MemoryLedger
    from schemas import IntegrationConfig
    from tests.integration.support import RecordingOutlets

    portal.keys["second-key"] = ApiKey(key="second-key", methods=set(ALL_METHODS),
                                       label="second")

    def tenant(tenant_id: str, key: str) -> IntegrationConfig:
        return IntegrationConfig.model_validate({
            "tenant_id": tenant_id, "portal_url": crm_double.portal_url("acme"),
            "admin_email": "admin@acme.example.com", "site_code": "main", "api_key": key,
            "timezone": "Europe/Kyiv"})

    registry = LaneRegistry(settings=CRMSettings(), ledger=MemoryLedger(),
                            outlets=RecordingOutlets())
    try:
        first = registry.clients.get(tenant("acme", "acme-key"))
        second = registry.clients.get(tenant("acme-2", "second-key"))
        assert first is not second
        await asyncio.gather(*(crm.credentials() for _ in range(12)
                               for crm in (first, second)))
        assert crm_double.state.stats()["acme"]["by_status"] == {"200": 24}
        assert await registry.evict_idle(after=0.0) == 0 and len(registry.clients) == 0
        assert registry.clients.get(tenant("acme", "acme-key")) is not first
    finally:
        await registry.stop()
