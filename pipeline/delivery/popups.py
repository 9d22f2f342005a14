"""A call's pop-ups and its manager's on-call status: worth something only now, never parked."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Protocol, TypeVar

from pipeline.crm.client import RetailCRMClient
from pipeline.delivery.errorpolicy import DeadLetter
from pipeline.delivery.ledger import CallFacts, Ledger, popup_flag, status_flag
from pipeline.delivery.work import StepFailed, Work, done_tag
from pipeline.observability.metrics import POPUPS_SKIPPED, STATUS_SYNC

__all__ = ["announce"]

T = TypeVar("T")


class Steps(Protocol):
    """What the pop-ups use of `pipeline.delivery.steps.Steps` (which calls them: no import
    back)."""

    client: RetailCRMClient
    ledger: Ledger
    clock: Callable[[], datetime]

    def call(self, method: str, fn: Callable[[], Awaitable[T]], *,
             deadline: datetime | None = None, work: Work | None = None,
             optional: bool = False) -> Awaitable[T]: ...


async def announce(steps: Steps, work: Work) -> None:
    """Pop-ups and the on-call status: worth something only now, so they leave first."""
    plan = work.plan
    if not plan.popups and plan.status_change is None:
        return
    facts = steps.ledger.facts(plan.tenant_id, plan.call_id)
    if facts.get(done_tag(work)):
        return
    await _popups(steps, work, facts)
    await _status(steps, work, facts)


async def _popups(steps: Steps, work: Work, facts: CallFacts) -> None:
    for popup in work.plan.popups:
        tag = popup_flag(popup.stage)
        if facts.get(tag):
            continue
        if steps.clock() > popup.not_after:
            POPUPS_SKIPPED.labels("stale").inc()
            continue
        try:
            await steps.call("/api/telephony/call/event",
                             lambda p=popup.payload: steps.client.call_event(p),  # type: ignore[misc]
                             deadline=popup.not_after, work=work)
        except StepFailed as failed:
            if isinstance(failed.action, DeadLetter) and failed.action.broken:
                raise
            # A pop-up is worth nothing later: it is counted, never parked or replayed.
            POPUPS_SKIPPED.labels(failed.action.reason.split(":")[0]).inc()
            continue
        steps.ledger.mark(work.plan.tenant_id, work.plan.call_id, tag)


async def _status(steps: Steps, work: Work, facts: CallFacts) -> None:
    """Busy while on the call; back to what it was after — unless the user changed it."""
    change = work.plan.status_change
    if change is None or steps.clock() > change.not_after:
        return
    plan = work.plan
    if facts.get(status_flag(change.action)):
        return
    try:
        user = await steps.call("/api/users/{id}", lambda: steps.client.user(change.user_id),
                                deadline=change.not_after, work=work)
        if change.action == "busy":
            if user.status != "busy":
                await steps.call("/api/users/{id}/status", lambda: steps.client.set_user_status(
                    change.user_id, "busy"), deadline=change.not_after, work=work)
                STATUS_SYNC.labels("busy").inc()
            steps.ledger.record(plan.tenant_id, plan.call_id, status_busy=True,
                                status_before=user.status if user.status != "busy" else None)
            return
        before = facts.get("status_before")
        if facts.get("status_busy") and before and user.status == "busy":
            await steps.call("/api/users/{id}/status", lambda: steps.client.set_user_status(
                change.user_id, before), deadline=change.not_after, work=work)
            STATUS_SYNC.labels("restore").inc()
        steps.ledger.record(plan.tenant_id, plan.call_id, status_restore=True)
    except StepFailed as failed:
        if isinstance(failed.action, DeadLetter) and failed.action.broken:
            raise
        # A status is worth nothing later, like a pop-up: counted, never parked.
        POPUPS_SKIPPED.labels("status:" + failed.action.reason.split(":")[0][:30]).inc()
