"""The call-back loop (option `callback_loop`): one open task a caller, closed by the call-back."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Protocol, TypeVar

from pipeline.crm.client import RetailCRMClient
from pipeline.crm.methods import TASK_EDIT
from pipeline.crm.models import Task
from pipeline.delivery.ledger import CallerFacts, CallerKey, CallFacts, Ledger
from pipeline.delivery.payloads import task_marker
from pipeline.delivery.planning import CallbackStep, CallPlan, callback_marker
from pipeline.observability.metrics import CALLBACK_SECONDS
from schemas.crm import TaskEdit

__all__ = ["complete_open_task", "note_on_open_task", "opened"]

T = TypeVar("T")


class Work(Protocol):
    plan: CallPlan


class Steps(Protocol):
    """What the loop uses of `pipeline.delivery.steps.Steps` (which calls it: no import back)."""

    client: RetailCRMClient
    ledger: Ledger
    clock: Callable[[], datetime]

    def caller(self, plan: CallPlan) -> CallerKey: ...

    def write_now(self, plan: CallPlan) -> None: ...

    def guard(self, work: Any, step: str, method: str,
              fn: Callable[[], Awaitable[T]]) -> Awaitable[T | None]: ...


def _step(work: Work) -> CallbackStep | None:
    return work.plan.callback


def opened(steps: Steps, work: Work, task_id: int) -> None:
    """The call's own task is known (made now or found again): it is the caller's open one —
    unless a call-back completed it already (a missed call delivered again after that)."""
    step, plan = _step(work), work.plan
    if step is None or step.completes:
        return
    key = steps.caller(plan)
    known = steps.ledger.caller(plan.tenant_id, key)
    if known.get("closed_task") == task_id or known.get("open_task") == task_id:
        return
    # `at` anew: the ledger prunes by it, and the caller may have been recorded long before.
    steps.ledger.record_caller(plan.tenant_id, key, at=int(steps.clock().timestamp()),
                               open_task=task_id, open_since=step.at.timestamp())


async def _open_task(steps: Steps, work: Work, step: str) -> tuple[int, Task | None] | None:
    """The caller's open task as the CRM has it now (None in the pair: gone); None when there
    is none, or the look-up failed (then noted on the work by the error policy)."""
    plan = work.plan
    task_id = steps.ledger.caller(plan.tenant_id, steps.caller(plan)).get("open_task")
    if not isinstance(task_id, int):
        return None

    async def read() -> list[Task]:
        return (await steps.client.tasks(filter={"ids": [task_id]}, limit=20)).tasks

    found = await steps.guard(work, step, "/api/tasks", read)
    if found is None:
        return None
    return task_id, next((t for t in found if t.id == task_id), None)


async def _edit(steps: Steps, task_id: int, edit: TaskEdit, site: str) -> bool:
    await steps.client.edit_task(task_id, edit, site=site)
    return True  # for `guard`, whose None means the step failed


def _forget(steps: Steps, work: Work, closed_task: int | None = None) -> None:
    facts: CallerFacts = {"open_task": None, "open_since": None}
    if closed_task is not None:  # by the call-back
        facts["closed_task"] = closed_task
    steps.ledger.record_caller(work.plan.tenant_id, steps.caller(work.plan), **facts)


async def note_on_open_task(steps: Steps, work: Work) -> bool:
    """A later missed call from a caller with an open task: its line is added to that task's
    comment instead of a task of its own. False: the call makes its own task (the caller has
    none open, or it was completed or deleted in the CRM). The line carries the call's marker,
    so a redelivery that finds it there does not add it twice."""
    step, plan = _step(work), work.plan
    if step is None or step.completes:
        return False
    known = steps.ledger.caller(plan.tenant_id, steps.caller(plan))
    if not isinstance(known.get("open_task"), int):
        return False
    found = await _open_task(steps, work, "task")
    if found is None:
        return True  # the look-up failed: parked or rejected, never a second task
    task_id, task = found
    commentary = (task.commentary or "") if task is not None else ""
    if task is None or (task.complete and task_marker(plan.call_id) not in commentary):
        _forget(steps, work)
        return False
    if task_marker(plan.call_id) not in commentary:
        edit = TaskEdit(commentary=f"{commentary}\n{step.note}" if commentary else step.note)
        if await steps.guard(work, "task", TASK_EDIT,
                             lambda: _edit(steps, task_id, edit, plan.site)) is None:
            return True
    steps.ledger.record(plan.tenant_id, plan.call_id, task=task_id, task_noted=True)
    steps.write_now(plan)
    return True


async def complete_open_task(steps: Steps, work: Work, facts: CallFacts) -> None:
    """A call that reached the caller completes their open task, with who and when in its
    comment, and observes how long they waited — once: the call's ledger facts say it was
    done. Completing twice is harmless in retailCRM, so a crash between the edit and the
    ledger record is mended by doing it again; the marker in the comment tells it apart from a
    task someone completed by hand (then the loop closes without a measure)."""
    step, plan = _step(work), work.plan
    if step is None or not step.completes or facts.get("callback") is not None:
        return
    found = await _open_task(steps, work, "callback")
    if found is None:
        return
    task_id, task = found
    marker = callback_marker(plan.call_id)
    commentary = (task.commentary or "") if task is not None else ""
    ours = task is not None and (not task.complete or marker in commentary)
    if task is not None and not task.complete:
        edit = TaskEdit(complete=True,
                        commentary=f"{commentary}\n{step.note}" if commentary else step.note)
        if await steps.guard(work, "callback", TASK_EDIT,
                             lambda: _edit(steps, task_id, edit, plan.site)) is None:
            return
    if ours:
        since = steps.ledger.caller(plan.tenant_id, steps.caller(plan)).get("open_since")
        if isinstance(since, int | float):
            CALLBACK_SECONDS.observe(max(0.0, step.at.timestamp() - since))
    steps.ledger.record(plan.tenant_id, plan.call_id, callback=task_id)
    _forget(steps, work, closed_task=task_id)
    steps.write_now(plan)
