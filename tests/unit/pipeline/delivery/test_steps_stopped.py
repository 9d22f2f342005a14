"""A step of a tenant that is no longer active asks the CRM nothing: it is parked as it broke."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import httpx
import pytest

from pipeline.crm.client import RetailCRMClient
from pipeline.delivery.errorpolicy import DeadLetter, Reason
from pipeline.delivery.health import TenantHealth
from pipeline.delivery.ledger import MemoryLedger
from pipeline.delivery.steps import Steps
from pipeline.delivery.tenantstate import StateStore
from pipeline.delivery.work import StepFailed
from schemas.crm import CallEventPayload
from tests.crmlane import QUICK


def steps() -> Steps:
    client = RetailCRMClient(base_url="https://acme.retailcrm.example", api_key="k")
    return Steps(client=client, ledger=MemoryLedger(), settings=QUICK,
                 health=TenantHealth(StateStore({}), "acme"), clock=lambda: datetime.now(UTC))


@pytest.mark.parametrize("stop", ["key", "outage", "operator"])
async def test_a_step_after_the_tenant_stopped_makes_no_request(stop: str) -> None:
    it = steps()
    asked: list[str] = []

    async def request() -> int:
        asked.append("tasks/create")
        return 1

    assert await it.call("/api/tasks/create", request) == 1  # active: asked
    if stop == "key":
        it.health.broke(DeadLetter(reason=Reason.INVALID_API_KEY, broken=True,
                                   method="/api/tasks/create"))
    elif stop == "outage":
        it.health.broke(DeadLetter(reason=f"{Reason.RETRIES_EXHAUSTED}:ReadTimeout",
                                   broken=True, method="/api/tasks/create"))
    else:
        it.health.deactivated("by an operator")
    with pytest.raises(StepFailed) as failed:
        await it.call("/api/tasks/create", request)
    assert asked == ["tasks/create"]  # nothing more went to the dead key or downed portal
    action = failed.value.action
    assert isinstance(action, DeadLetter) and action.broken
    assert action.outage is (stop == "outage")
    await it.client.aclose()


async def test_a_request_waiting_for_its_pace_is_not_sent_once_the_key_is_found_dead() -> None:
    """Pop-ups of several calls go at once: one finds the key dead while another still waits
    for its place in the pacing. That one is parked as the key broke, never sent."""
    sent: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request.url.path)
        return httpx.Response(200, json={"success": True})

    client = RetailCRMClient(base_url="https://acme.retailcrm.example", api_key="k",
                             transport=httpx.MockTransport(answer), telephony_rps=1)
    it = Steps(client=client, ledger=MemoryLedger(), settings=QUICK,
               health=TenantHealth(StateStore({}), "acme"), clock=lambda: datetime.now(UTC))
    event = CallEventPayload(phone="+380501112233", type="in", codes=["101"])
    await it.call("/api/telephony/call/event", lambda: client.call_event(event))
    waiting = asyncio.create_task(
        it.call("/api/telephony/call/event", lambda: client.call_event(event)))
    await asyncio.sleep(0.1)  # it waits for its place: one telephony request a second here
    assert not waiting.done()
    it.health.broke(DeadLetter(reason=Reason.INVALID_API_KEY, broken=True,
                               method="/api/telephony/call/event"))
    with pytest.raises(StepFailed) as failed:
        await waiting
    assert sent == ["/api/v5/telephony/call/event"], "the second never left"
    assert isinstance(failed.value.action, DeadLetter) and failed.value.action.broken
    await client.aclose()

