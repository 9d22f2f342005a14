"""Own numbers end to end: in the call history, never a lead, also read again or replayed."""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any

import pytest

from pipeline.devtools.samples import sample_calls, sample_tenants
from schemas import EmployeeLink
from tests.integration.stack import Stack, StackFactory
from tests.integration.support import RESULT, actual_state, expected_state, same
from tests.waiting import wait_until

pytestmark = pytest.mark.kafka

MOBILE = "+380671234567"  # an employee's mobile, linked as their extension


def own_calls(tenant_id: str, start: str) -> list[dict[str, Any]]:
    """acme calling itself, in the formats producers and operators write numbers in."""
    base = {"tenant_id": tenant_id, "started_at": start, "direction": "in",
            "tracking_number": "+380443334400", "wait_seconds": 12,
            "utm": {"source": "google", "medium": "cpc"}, "ga_client_id": "GA1.2.3.4"}
    return [  # (the second tracking number is listed as "044 333 44 01")
        {**base, "call_id": "own-tracking", "client_phone": "+380 44 333 44 01",
         "status": "no_answer"},
        {**base, "call_id": "own-same-line", "client_phone": "+380443334400",
         "status": "busy"},
        {**base, "call_id": "own-listed", "client_phone": "380500000001", "status": "failed"},
        {**base, "call_id": "own-mobile", "client_phone": MOBILE, "status": "answered",
         "talk_seconds": 40, "employee": {"id": "emp-1", "extension": "101"}},
        {**base, "call_id": "own-outbound", "client_phone": MOBILE, "direction": "out",
         "status": "no_answer"},
    ]


def own_stack(make_stack: StackFactory) -> Stack:
    stack = make_stack(sample_tenants(1))
    tenant = stack.tenants[0]
    options = {"own_numbers": {"numbers": ["044 333 44 01", "+380 50 000 00 01"]}}
    user = tenant.mapping.employees["emp-1"].crm_user_id
    employees = {**tenant.mapping.employees,
                 "emp-mobile": EmployeeLink(crm_user_id=user, extension="067 123 45 67")}
    stack.tenants[0] = replace(
        tenant, config=tenant.config.model_copy(update={
            "options": tenant.config.options.patched(options)}),
        mapping=tenant.mapping.model_copy(update={"employees": employees}))
    return stack


def leads_of(stack: Stack, tenant_id: str, phones: set[str]) -> list[str]:
    """Whatever the portal holds for `phones` but their calls."""
    portal = stack.double.state.portals[tenant_id]
    found = [f"customer {c['id']}" for c in portal.customers.values()
             if {p["number"] for p in c["phones"]} & phones]
    found += [f"order {o['id']}" for o in portal.orders.values() if o.get("phone") in phones]
    found += [f"task {t['id']}" for t in portal.tasks.values() if t.get("phone") in phones]
    return found


async def test_own_numbers_are_in_the_call_history_and_never_leads_also_when_read_again(
        make_stack: StackFactory) -> None:
    stack = own_stack(make_stack)
    await stack.start()
    tenant = stack.tenants[0]
    tid = tenant.config.tenant_id
    events = sample_calls([tenant.sample], 60, seed=14)
    own = own_calls(tid, events[len(events) // 2]["started_at"])
    everything = events[:30] + own + events[30:]
    own_phones = {"+380443334401", "+380443334400", "+380500000001", MOBILE}
    assert not own_phones & {e["client_phone"] for e in events}
    await stack.publish_calls(everything)
    await stack.wait_done()

    want = expected_state(events, tenant)  # the other callers' leads, exactly
    mapped = tenant.mapping.employees["emp-1"].crm_user_id
    for e in own:
        want.calls[e["call_id"]] = (RESULT[e["status"]],
                                    mapped if "employee" in e else None, None)
    assert same(actual_state(stack, tid), want)
    assert leads_of(stack, tid, own_phones) == []
    portal = stack.double.state.portals[tid]
    for e in own:  # the call as it was, without a campaign's attribution
        call = portal.calls[e["call_id"]]
        assert "source" not in call and "clientId" not in call, call
        assert call["externalPhone"] == "+380443334400" and call["durationWaiting"] == 12
    assert all("source" in portal.calls[e["call_id"]] for e in events if e.get("utm"))
    snapshot = actual_state(stack, tid)

    # Redelivered: the same records again, and the worker SIGKILLed before it committed them.
    await stack.publish_calls(everything)
    stack.restart_worker(kill=True)
    await stack.wait_done()
    assert same(actual_state(stack, tid), snapshot)
    assert leads_of(stack, tid, own_phones) == []

    # Replayed (today and the two days before): every record read again, own numbers still
    # no leads, and nothing made twice.
    result = await stack.command("replay", tid, follow=120)
    assert result.status in ("accepted", "done"), result.message

    async def replayed() -> bool:
        replay = (await stack.command("status", tid)).data["replay"]
        return bool(replay and replay["done"] and replay["submitted"] >= len(everything))

    await wait_until(replayed, "the replay to read every call again", within=120, every=0.5,
                     detail=stack.worker.log_tail)
    assert same(actual_state(stack, tid), snapshot)
    assert leads_of(stack, tid, own_phones) == []

    # Read again with nothing remembered (a new consumer group, so new tables and no ledger):
    # only the planning keeps own numbers out now. Other callers are known customers by
    # then (no second order); their missed calls get a second task, as README documents.
    stack.app_id = stack.env["CALLSYNC_APP_ID"] = f"e2e-{uuid.uuid4().hex[:8]}"
    stack.restart_worker(kill=False)
    await stack.wait_done()
    again = actual_state(stack, tid)
    assert (again.calls, again.customers, sorted(again.order_phones)) == (
        snapshot.calls, snapshot.customers, sorted(snapshot.order_phones))
    assert len(again.tasks) > len(snapshot.tasks), "nothing was read again: proves nothing"
    assert leads_of(stack, tid, own_phones) == []
