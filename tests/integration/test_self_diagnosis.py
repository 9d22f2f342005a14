"""Self-diagnosis end to end: an unlinked extension's calls make one task, also when read again."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pipeline.devtools.demo import scrape
from pipeline.devtools.samples import sample_tenants
from tests.integration.stack import Stack, StackFactory

pytestmark = pytest.mark.kafka


def unlinked_calls(tenant_id: str, employee: str, extension: str) -> list[dict[str, Any]]:
    """Six calls answered by an employee linked to no CRM manager, from six callers."""
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    return [{"tenant_id": tenant_id, "call_id": f"unlinked-{n}",
             "client_phone": f"+38050222{n:04d}",
             "started_at": (start + timedelta(minutes=n)).isoformat(), "direction": "in",
             "status": "answered", "wait_seconds": 5, "talk_seconds": 40,
             "tracking_number": "+380443334400",
             "employee": {"id": employee, "extension": extension}} for n in range(6)]


def diagnosis_stack(make_stack: StackFactory) -> Stack:
    stack = make_stack(sample_tenants(1))
    tenant = stack.tenants[0]
    stack.tenants[0] = replace(tenant, config=tenant.config.model_copy(update={
        "options": tenant.config.options.patched({"self_diagnosis": True})}))
    return stack


def diagnosis_tasks(stack: Stack, tenant_id: str) -> list[dict[str, Any]]:
    portal = stack.double.state.portals[tenant_id]
    return [dict(t) for t in portal.tasks.values() if t["text"].startswith("callsync: ")]


async def test_an_unlinked_extension_makes_one_task_for_the_senior_manager_once(
        make_stack: StackFactory) -> None:
    stack = diagnosis_stack(make_stack)
    await stack.start()
    tenant = stack.tenants[0]
    tid = tenant.config.tenant_id
    employee, extension = tenant.sample.employees[-1]  # the one the stack leaves unmapped
    assert employee not in tenant.mapping.employees
    calls = unlinked_calls(tid, employee, extension)
    await stack.publish_calls(calls)
    await stack.wait_done()

    [task] = diagnosis_tasks(stack, tid)
    assert task["performerId"] == tenant.senior_manager_id and not task["complete"]
    assert f"extension {extension}" in task["text"] and employee in task["commentary"]
    portal = stack.double.state.portals[tid]
    assert set(portal.calls) == {c["call_id"] for c in calls}, "every call delivered"
    metrics = scrape(stack.metrics_port)
    assert metrics.get('callsync_diagnosis_tasks_total{problem="unmapped_extension"}') == 1.0

    # Redelivered: the same records again, and the worker SIGKILLed before it committed them.
    await stack.publish_calls(calls)
    stack.restart_worker(kill=True)
    await stack.wait_done()
    assert diagnosis_tasks(stack, tid) == [task], "no second task, the first untouched"
    assert portal.task_edits == []
