"""The call-back loop end to end: one task a caller, completed once, also when read again."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pipeline.devtools.demo import scrape
from pipeline.devtools.samples import sample_tenants
from tests.integration.stack import Stack, StackFactory
from tests.waiting import wait_until

pytestmark = pytest.mark.kafka

ANNA, BORYS, CHAS = "+380501110001", "+380501110002", "+380501110003"


def loop_calls(tenant_id: str, employee: str, extension: str) -> list[dict[str, Any]]:
    """Anna misses twice and calls again (answered); Borys misses once and is called back;
    Chas misses once and waits still."""
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)

    def at(minutes: int, call_id: str, phone: str, **more: Any) -> dict[str, Any]:
        return {"tenant_id": tenant_id, "call_id": call_id, "client_phone": phone,
                "started_at": (start + timedelta(minutes=minutes)).isoformat(),
                "direction": "in", "status": "no_answer", "wait_seconds": 20,
                "talk_seconds": 0, "tracking_number": "+380443334400", **more}

    by = {"employee": {"id": employee, "extension": extension}, "status": "answered",
          "talk_seconds": 60, "wait_seconds": 10}
    return [
        at(0, "anna-missed-1", ANNA),
        at(1, "borys-missed", BORYS, status="busy"),
        at(5, "anna-missed-2", ANNA),
        at(6, "chas-missed", CHAS),
        at(30, "anna-answered", ANNA, **by),
        at(60, "borys-called-back", BORYS, direction="out", **by),
    ]


def loop_stack(make_stack: StackFactory) -> Stack:
    stack = make_stack(sample_tenants(1))
    tenant = stack.tenants[0]
    stack.tenants[0] = replace(tenant, config=tenant.config.model_copy(update={
        "options": tenant.config.options.patched({"callback_loop": True})}))
    return stack


def tasks_of(stack: Stack, tenant_id: str) -> dict[str, list[dict[str, Any]]]:
    portal = stack.double.state.portals[tenant_id]
    found: dict[str, list[dict[str, Any]]] = {}
    for task in portal.tasks.values():
        found.setdefault(task["phone"], []).append(dict(task))
    return found


def completions(stack: Stack, tenant_id: str) -> list[int]:
    portal = stack.double.state.portals[tenant_id]
    return [e["id"] for e in portal.task_edits if e.get("complete") is True]


def waits(stack: Stack) -> tuple[float, float]:
    metrics = scrape(stack.metrics_port)
    return (metrics.get("callsync_callback_seconds_count", 0.0),
            metrics.get("callsync_callback_seconds_sum", 0.0))


async def test_missed_calls_make_one_task_a_caller_and_the_call_back_completes_it_once(
        make_stack: StackFactory) -> None:
    stack = loop_stack(make_stack)
    await stack.start()
    tenant = stack.tenants[0]
    tid = tenant.config.tenant_id
    employee, link = next(iter(tenant.mapping.employees.items()))
    calls = loop_calls(tid, employee, link.extension or "101")
    await stack.publish_calls(calls)
    await stack.wait_done()

    tasks = tasks_of(stack, tid)
    assert sorted(tasks) == [ANNA, BORYS, CHAS] and all(len(t) == 1 for t in tasks.values())
    [anna], [borys], [chas] = tasks[ANNA], tasks[BORYS], tasks[CHAS]
    lines = anna["commentary"].split("\n")
    assert [line.split(" ")[:2] for line in lines[:2]] == [["Call", "anna-missed-1"],
                                                           ["Call", "anna-missed-2"]]
    assert lines[2].startswith("Answered again at ") and lines[2].endswith(
        f"by CRM user {link.crm_user_id} (employee {employee}, ext {link.extension}) "
        "(call anna-answered).") and len(lines) == 3
    assert borys["complete"] and anna["complete"] and not chas["complete"]
    assert borys["commentary"].split("\n")[1].startswith("Called back at ")
    assert sorted(completions(stack, tid)) == sorted([anna["id"], borys["id"]])
    portal = stack.double.state.portals[tid]
    assert {c for c in portal.calls} == {c["call_id"] for c in calls}
    # Waited: Anna from her first missed call to the answer, Borys to the call-back's answer.
    assert waits(stack) == (2.0, float(30 * 60 + 10 + 59 * 60 + 10))
    snapshot = tasks_of(stack, tid)

    # Redelivered: the same records again, and the worker SIGKILLed before it committed them.
    await stack.publish_calls(calls)
    stack.restart_worker(kill=True)
    await stack.wait_done()
    assert tasks_of(stack, tid) == snapshot, "no duplicate task, no second note"
    assert len(completions(stack, tid)) == 2, "no second completion"
    assert waits(stack) == (0.0, 0.0), "the new worker measured no wait again"

    # Replayed (today and the two days before): read again, every step known done.
    result = await stack.command("replay", tid, follow=120)
    assert result.status in ("accepted", "done"), result.message

    async def replayed() -> bool:
        replay = (await stack.command("status", tid)).data["replay"]
        return bool(replay and replay["done"] and replay["submitted"] >= len(calls))

    await wait_until(replayed, "the replay to read the calls again", within=120, every=0.5)
    assert tasks_of(stack, tid) == snapshot
    assert len(completions(stack, tid)) == 2 and waits(stack) == (0.0, 0.0)
