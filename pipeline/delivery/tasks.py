"""The tasks of a batch's missed calls: one each, however often a call is delivered or crashes."""

from __future__ import annotations

from functools import partial

from pipeline.delivery import callback
from pipeline.delivery.errorpolicy import DeadLetter
from pipeline.delivery.outcome import failed
from pipeline.delivery.payloads import task_marker
from pipeline.delivery.planning import task_for, task_performer
from pipeline.delivery.steps import Steps, at_most_once, or_zero
from pipeline.delivery.work import Each, Lead, for_lead
from schemas.crm import TaskPayload

__all__ = ["Tasks"]


class Tasks:
    """The last phase of a batch's leads (pipeline/delivery/leads.py): a task names the
    customer the phases before made. retailCRM does not de-duplicate tasks, so the intents are
    made durable before the creates, and an intent found after a crash looks for its task
    before making one."""

    def __init__(self, steps: Steps, each: Each) -> None:
        self.steps = steps
        self.each = each

    async def run(self, leads: list[Lead]) -> None:
        fresh: list[tuple[Lead, TaskPayload]] = []
        for lead in leads:
            work, plan = lead.work, lead.work.plan
            if plan.task is None or lead.facts.get("task") or work.revoked:
                continue
            performer = task_performer(plan, lead.lookup)
            if performer is None:
                work.add(failed("task", "/api/tasks/create",
                                DeadLetter(reason="NoPerformer", broken=False)))
                continue
            task = task_for(plan, performer=performer, customer=lead.customer)
            if task is None or await self._noted(lead):
                continue
            if lead.facts.get("task_pending"):  # a crash came between create and record
                await for_lead(self.each, lead, partial(self._recheck, lead, task))
                continue
            fresh.append((lead, task))
        if not fresh:
            return
        calls = [(lead.work.plan.tenant_id, lead.work.plan.call_id) for lead, _ in fresh]
        for tenant_id, call_id in calls:
            self.steps.ledger.record(tenant_id, call_id, task_pending=True)
        await self.steps.ledger.sync(*calls)
        for lead, task in fresh:
            await for_lead(self.each, lead, partial(self._create, lead, task))

    async def _noted(self, lead: Lead) -> bool:
        """The call's line went on its caller's open task (the call-back loop) instead of a
        task of its own; True too where that failed: never a second task for the caller."""
        noted = [True]

        async def step() -> None:
            noted[0] = await callback.note_on_open_task(self.steps, lead.work)

        await for_lead(self.each, lead, step)
        return noted[0]

    async def _recheck(self, lead: Lead, task: TaskPayload) -> None:
        plan = lead.work.plan
        found = await self.steps.guard(lead.work, "task", "/api/tasks", lambda: or_zero(
            lambda: self.steps.client.find_task(task, task_marker(plan.call_id))))
        if found is None:  # the lookup failed: its outcome is the call's
            return
        if found:
            self.steps.ledger.record(plan.tenant_id, plan.call_id, task=found)
            callback.opened(self.steps, lead.work, found)
            self.steps.write_now(plan)
            return
        await self._create(lead, task)

    async def _create(self, lead: Lead, task: TaskPayload) -> None:
        plan = lead.work.plan
        task_id = await self.steps.guard(lead.work, "task", "/api/tasks/create", at_most_once(
            lambda: self.steps.client.create_task(task, site=plan.site),
            lambda: self.steps.client.find_task(task, task_marker(plan.call_id))))
        if task_id is not None:
            self.steps.ledger.record(plan.tenant_id, plan.call_id, task=task_id)
            callback.opened(self.steps, lead.work, task_id)
            self.steps.write_now(plan)
