"""Lead at answer end to end: a new caller's customer and order exist while they are on the call,
and nothing is made twice when the records are read again."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pipeline.devtools.samples import sample_tenants
from tests.integration.stack import Stack, StackFactory
from tests.waiting import wait_until

pytestmark = pytest.mark.kafka

ANNA, BORYS, CHAS = "+380501120001", "+380501120002", "+380501120003"


def records(tenant_id: str, employee: str, extension: str) -> dict[str, list[dict[str, Any]]]:
    """Anna's call: answered, later ended. Borys's: both records at once. Chas's: only ended
    (a producer that reports calls at their end)."""
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)

    def record(minutes: int, call_id: str, phone: str, stage: str) -> dict[str, Any]:
        answered = stage == "answered"
        return {"tenant_id": tenant_id, "call_id": call_id, "client_phone": phone,
                "stage": stage, "started_at": (start + timedelta(minutes=minutes)).isoformat(),
                "direction": "in", "tracking_number": "+380443334400",
                "employee": {"id": employee, "extension": extension},
                "status": "in_progress" if answered else "answered", "wait_seconds": 8,
                "talk_seconds": 0 if answered else 75,
                "utm": {"source": "google", "medium": "cpc", "campaign": "sofas"}}

    return {"anna-answered": [record(0, "anna", ANNA, "answered")],
            "anna-ended": [record(0, "anna", ANNA, "ended")],
            "rest": [record(5, "borys", BORYS, "answered"), record(5, "borys", BORYS, "ended"),
                     record(9, "chas", CHAS, "ended")]}


def at_answer_stack(make_stack: StackFactory) -> Stack:
    stack = make_stack(sample_tenants(1))
    tenant = stack.tenants[0]
    stack.tenants[0] = replace(tenant, config=tenant.config.model_copy(update={
        "options": tenant.config.options.patched({"lead": {"at_answer": True}})}))
    return stack


def crm(stack: Stack, tenant_id: str) -> dict[str, Any]:
    """What the portal holds for these callers: customers by phone, orders by externalId and
    the customer they name, calls by id."""
    portal = stack.double.state.portals[tenant_id]
    phones = {ANNA, BORYS, CHAS}
    customers = {c["id"]: c["phones"][0]["number"] for c in portal.customers.values()
                 if c["phones"] and c["phones"][0]["number"] in phones}
    return {
        "customers": sorted(customers.values()),
        "orders": sorted((o["externalId"], customers.get(o["customer"]["id"], "?"))
                         for o in portal.orders.values() if o.get("phone") in phones),
        "calls": sorted(c for c, call in portal.calls.items() if call["phone"] in phones),
        "tasks": sorted(t["id"] for t in portal.tasks.values() if t.get("phone") in phones)}


async def test_a_new_callers_lead_exists_while_on_the_call_and_is_made_once(
        make_stack: StackFactory) -> None:
    stack = at_answer_stack(make_stack)
    await stack.start()
    tenant = stack.tenants[0]
    tid = tenant.config.tenant_id
    employee, link = next(iter(tenant.mapping.employees.items()))
    calls = records(tid, employee, link.extension or "101")
    prefix = f"cs-{tid}-call-"

    # Anna is on the call: her customer and order are there before her call has ended.
    await stack.publish_calls(calls["anna-answered"])
    await stack.wait_done()
    assert crm(stack, tid) == {"customers": [ANNA], "orders": [(prefix + "anna", ANNA)],
                               "calls": [], "tasks": []}
    portal = stack.double.state.portals[tid]
    [order] = [o for o in portal.orders.values() if o.get("phone") == ANNA]
    assert order["managerId"] == link.crm_user_id
    assert order["source"] == {"source": "google", "medium": "cpc", "campaign": "sofas"}

    # Her hang-up completes the call history; Borys's two records came together; Chas's call
    # was reported only at its end and makes his lead then.
    await stack.publish_calls(calls["anna-ended"] + calls["rest"])
    await stack.wait_done()
    everything = {"customers": [ANNA, BORYS, CHAS],
                  "orders": [(prefix + "anna", ANNA), (prefix + "borys", BORYS),
                             (prefix + "chas", CHAS)],
                  "calls": ["anna", "borys", "chas"], "tasks": []}
    assert crm(stack, tid) == everything
    assert portal.calls["anna"]["result"] == "answered"

    # Redelivered: every record again, and the worker SIGKILLed before it committed them.
    every = calls["anna-answered"] + calls["anna-ended"] + calls["rest"]
    await stack.publish_calls(every)
    stack.restart_worker(kill=True)
    await stack.wait_done()
    assert crm(stack, tid) == everything, "no second customer or order"

    # Replayed (today and the two days before): read again, every step known done.
    result = await stack.command("replay", tid, follow=120)
    assert result.status in ("accepted", "done"), result.message

    async def replayed() -> bool:
        replay = (await stack.command("status", tid)).data["replay"]
        return bool(replay and replay["done"] and replay["submitted"] >= 2 * len(every))

    await wait_until(replayed, "the replay to read the records again", within=120, every=0.5)
    assert crm(stack, tid) == everything, "no second customer or order after the replay"
