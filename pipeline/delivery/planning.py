"""Which retailCRM operations a call event needs: pure functions, no I/O, no clock of their own."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from zoneinfo import ZoneInfo

from pipeline.crm.models import ManagerLookup
from pipeline.delivery.callplan import (
    CallbackStep,
    CallPlan,
    Popup,
    StatusAction,
    StatusChange,
    TaskDraft,
)
from pipeline.delivery.payloads import (
    HANGUP_STATUS,
    call_upload,
    customer_external_id,
    lead_payloads,
    missed_call_task,
    order_external_id,
    order_for,
    task_for,
    utm_source,
)
from schemas.call_event import CallDirection, CallEvent, CallStage, CallStatus
from schemas.crm import CallEventPayload, CallResult
from schemas.integration import IntegrationConfig
from schemas.mapping import Routes
from schemas.phone import matches_any, own_number_form

# The plan's types (callplan.py) and payload helpers (payloads.py) are importable from here too.
__all__ = [
    "CallPlan", "CallbackStep", "Popup", "StatusAction", "StatusChange", "TaskDraft",
    "callback_marker", "customer_external_id", "is_new_lead", "is_own_number",
    "order_external_id", "order_for", "plan_call", "task_for", "task_performer",
]


def _popups(event: CallEvent, config: IntegrationConfig,
            mapping: Routes) -> tuple[Popup, ...]:
    employee_id = event.employee.id if event.employee else None
    user_id = mapping.crm_user_for(employee_id) or mapping.senior_manager_id
    codes = [event.employee.extension] if event.employee and event.employee.extension else None
    if user_id is None and codes is None:
        return ()
    wait = timedelta(seconds=event.wait_seconds)
    if event.stage is CallStage.STARTED:
        kind, at, hangup = event.direction.value, event.started_at, None
    elif event.stage is CallStage.ANSWERED:
        kind, at, hangup = event.direction.value, event.started_at + wait, None
    else:
        kind = "hangup"
        at = event.started_at + wait + timedelta(seconds=event.talk_seconds)
        hangup = HANGUP_STATUS[event.status]
    payload = CallEventPayload(
        phone=event.client_phone, type=kind,  # type: ignore[arg-type]
        codes=codes, userIds=[user_id] if user_id else None, hangupStatus=hangup,
        externalPhone=event.tracking_number, site=config.site_code, callExternalId=event.call_id)
    max_age = timedelta(seconds=config.options.popup_max_age_seconds)
    return (Popup(payload=payload, not_after=at + max_age, stage=event.stage),)


def _status_change(event: CallEvent, config: IntegrationConfig,
                   mapping: Routes) -> StatusChange | None:
    user_id = mapping.crm_user_for(event.employee.id if event.employee else None)
    if not config.options.status_sync or user_id is None:
        return None
    if event.stage is CallStage.ENDED:
        at = event.started_at + timedelta(seconds=event.wait_seconds + event.talk_seconds)
        action: StatusAction = "restore"
    elif event.stage is CallStage.ANSWERED or event.direction is CallDirection.OUTBOUND:
        at, action = event.started_at + timedelta(seconds=event.wait_seconds), "busy"
    else:
        return None  # an inbound call still ringing: nobody is on it yet
    # Like pop-ups, a status from a backlog or a replay would be a lie: only fresh ones.
    return StatusChange(user_id=user_id, action=action,
                        not_after=at + timedelta(seconds=config.options.popup_max_age_seconds))


def _extension_numbers(mapping: Routes) -> list[str]:
    """The linked employees' extensions that are full phone numbers (a mobile as extension)."""
    numbers: list[str] = []
    for link in mapping.employees.values():
        # Most extensions are a few digits: no caller's number, and not worth a parse.
        if link.extension and sum(ch.isdigit() for ch in link.extension) >= 6:
            try:
                numbers.append(own_number_form(link.extension))
            except ValueError:
                continue
    return numbers


def is_own_number(event: CallEvent, config: IntegrationConfig,
                  mapping: Routes) -> bool:
    """The client side of the call is the tenant itself: the very tracking number the call
    came in on, one of the tenant's `own_numbers`, or a linked employee's extension."""
    if event.client_phone == event.tracking_number:
        return True
    own = config.options.own_numbers
    numbers = list(own.numbers)
    if own.employee_extensions:
        numbers += _extension_numbers(mapping)
    return matches_any(event.client_phone, numbers)


def plan_call(event: CallEvent, config: IntegrationConfig, mapping: Routes) -> CallPlan:
    """Everything the call needs that can be decided before asking the CRM anything."""
    popups = _popups(event, config, mapping)
    status_change = _status_change(event, config, mapping)
    base = CallPlan(tenant_id=event.tenant_id, call_id=event.call_id, phone=event.client_phone,
                    site=config.site_code, popups=popups, status_change=status_change)
    if _lead_at_answer(event, config, mapping):
        return _answered_lead(event, config, mapping, base)
    if event.stage is not CallStage.ENDED or event.status is CallStatus.IN_PROGRESS:
        return base
    zone = config.zone
    employee = event.employee
    mapped = mapping.crm_user_for(employee.id if employee else None)
    manager = mapped or mapping.senior_manager_id
    # The company calling itself is no lead and no campaign's conversion: its call is kept in
    # the history, but without the attribution, and nothing is looked up or created for it.
    own = is_own_number(event, config, mapping)
    source = None if own else utm_source(event.utm)
    upload = call_upload(event, config, mapped=mapped, source=source, own=own)
    from_client = event.direction is CallDirection.INBOUND and not own
    options = config.options
    ended = event.started_at + timedelta(seconds=event.wait_seconds + event.talk_seconds)
    hold = ended + timedelta(seconds=options.recording_wait_seconds) if (
        options.recording_wait_seconds and upload.result is CallResult.ANSWERED
        and upload.recordUrl is None) else None
    customer, order = lead_payloads(event, config, manager, source) if from_client else (None, None)
    task = None
    if from_client and event.status is not CallStatus.ANSWERED and options.missed_call_task:
        task = missed_call_task(event, zone, ended=ended, mapped=mapped,
                                senior_manager_id=mapping.senior_manager_id)
    callback = None
    if options.callback_loop and task is not None:
        callback = CallbackStep(at=event.started_at, note=task.commentary, completes=False)
    elif options.callback_loop and not own and event.status is CallStatus.ANSWERED:
        callback = _callback_step(event, mapped, zone)
    return CallPlan(
        tenant_id=event.tenant_id, call_id=event.call_id, phone=event.client_phone,
        site=config.site_code, popups=popups, status_change=status_change, upload=upload,
        lookup=customer is not None or order is not None or task is not None,
        customer=customer, order=order, task=task, callback=callback, hold_upload_until=hold,
        hold_seconds=options.recording_wait_seconds if hold is not None else 0)


def _lead_at_answer(event: CallEvent, config: IntegrationConfig, mapping: Routes) -> bool:
    """Option `lead.at_answer`: the `answered` record of a caller's call makes the lead."""
    lead = config.options.lead
    return (lead.at_answer and event.stage is CallStage.ANSWERED
            and event.direction is CallDirection.INBOUND
            and (lead.create_customer or lead.create_order)
            and not is_own_number(event, config, mapping))


def _answered_lead(event: CallEvent, config: IntegrationConfig, mapping: Routes,
                   base: CallPlan) -> CallPlan:
    """The lookup, customer and order while the manager is on the call; nothing else (the
    call's upload, task and call-back step are its `ended` record's). The ledger's `lead`,
    `customer_id` and `order` facts of the call id tell the `ended` record they are done."""
    employee = event.employee
    manager = mapping.crm_user_for(employee.id if employee else None) or \
        mapping.senior_manager_id
    customer, order = lead_payloads(event, config, manager, utm_source(event.utm))
    return dataclasses.replace(base, lookup=True, customer=customer, order=order)


def _callback_step(event: CallEvent, mapped: int | None, zone: ZoneInfo) -> CallbackStep:
    """An answered call from the caller, or to them: it closes their open call-back task."""
    answered = event.started_at + timedelta(seconds=event.wait_seconds)
    local = answered.astimezone(zone).strftime("%Y-%m-%d %H:%M")
    who = [f"CRM user {mapped}"] if mapped is not None else []
    if event.employee is not None:
        ext = f", ext {event.employee.extension}" if event.employee.extension else ""
        who.append(f"employee {event.employee.id}{ext}")
    by = (who[0] + (f" ({who[1]})" if len(who) > 1 else "")) if who else "an unknown employee"
    verb = "Called back" if event.direction is CallDirection.OUTBOUND else "Answered again"
    note = f"{verb} at {local} by {by} {callback_marker(event.call_id)}."
    return CallbackStep(at=answered, note=note, completes=True)


def callback_marker(call_id: str) -> str:
    """Marks the comment a call-back adds: a completed task carrying it was completed by it."""
    return f"(call {call_id})"


def is_new_lead(lookup: ManagerLookup) -> bool:
    """A new lead: the CRM did not know the caller when the call was first delivered."""
    return lookup.customer is None


def task_performer(plan: CallPlan, lookup: ManagerLookup) -> int | None:
    """The responsible manager: the CRM's, else the employee's, else the senior manager."""
    if plan.task is None:
        return None
    return (lookup.manager.id if lookup.manager else None) or plan.task.mapped_user_id \
        or plan.task.senior_manager_id
