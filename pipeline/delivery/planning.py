"""Which retailCRM operations a call event needs: pure functions, no I/O, no clock of their own."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from pipeline.crm.models import ManagerLookup
from schemas.call_event import CallDirection, CallEvent, CallStage, CallStatus, Utm
from schemas.crm import (
    CallEventPayload,
    CallResult,
    CallUpload,
    CustomerPayload,
    CustomerPhone,
    CustomerRef,
    HangupStatus,
    OrderPayload,
    SourcePayload,
    TaskPayload,
)
from schemas.integration import IntegrationConfig
from schemas.mapping import Routes
from schemas.phone import matches_any, own_number_form

__all__ = [
    "CallPlan", "CallbackStep", "Popup", "StatusAction", "StatusChange", "TaskDraft",
    "callback_marker", "customer_external_id", "is_new_lead", "is_own_number",
    "order_external_id", "order_for", "plan_call", "task_for", "task_performer",
]

CALL_RESULT = {
    CallStatus.ANSWERED: CallResult.ANSWERED, CallStatus.NO_ANSWER: CallResult.NO_ANSWER,
    CallStatus.BUSY: CallResult.BUSY, CallStatus.FAILED: CallResult.FAILED,
    CallStatus.CANCELLED: CallResult.NO_ANSWER, CallStatus.IN_PROGRESS: CallResult.UNKNOWN,
}
HANGUP_STATUS = {
    CallStatus.ANSWERED: HangupStatus.ANSWERED, CallStatus.NO_ANSWER: HangupStatus.NO_ANSWERED,
    CallStatus.BUSY: HangupStatus.BUSY, CallStatus.FAILED: HangupStatus.FAILED,
    CallStatus.CANCELLED: HangupStatus.CANCEL, CallStatus.IN_PROGRESS: HangupStatus.FAILED,
}
UTM_TO_SOURCE = {"source": "source", "medium": "medium", "campaign": "campaign",
                 "term": "keyword", "content": "content"}
_UNSAFE = re.compile(r"[^A-Za-z0-9_.:-]")
StatusAction = Literal["busy", "restore"]


@dataclass(frozen=True)
class Popup:
    """A pop-up worth showing only until `not_after` (checked when it is sent, not planned)."""

    payload: CallEventPayload
    not_after: datetime
    stage: CallStage


@dataclass(frozen=True)
class StatusChange:
    """Mirror the call on the manager's CRM status: busy while on it, back after hang-up."""

    user_id: int
    action: StatusAction
    not_after: datetime


@dataclass(frozen=True)
class TaskDraft:
    text: str
    commentary: str
    datetime: str
    phone: str
    mapped_user_id: int | None
    senior_manager_id: int | None


@dataclass(frozen=True)
class CallbackStep:
    """The call's part in the call-back loop (option `callback_loop`). A missed call
    (`completes` False) notes `note` on its caller's open task, or opens one; a call that
    reached the caller completes that task with `note` as its comment. `at`: when the missed
    call started, or when the call-back was answered."""

    at: datetime
    note: str
    completes: bool


@dataclass(frozen=True)
class CallPlan:
    tenant_id: str
    call_id: str
    phone: str
    site: str
    popups: tuple[Popup, ...] = ()
    status_change: StatusChange | None = None
    upload: CallUpload | None = None
    lookup: bool = False  # ask telephony/manager who the caller is
    customer: CustomerPayload | None = None  # created when the CRM does not know the caller
    order: OrderPayload | None = None  # for a new lead: the caller was unknown
    task: TaskDraft | None = None  # for a missed call
    callback: CallbackStep | None = None  # option callback_loop
    # An answered call without a recording waits this long for a record that brings one.
    hold_upload_until: datetime | None = None

    @property
    def is_empty(self) -> bool:
        return not (self.popups or self.upload or self.lookup or self.status_change)


def customer_external_id(tenant_id: str, phone: str) -> str:
    return _UNSAFE.sub("-", f"cs-{tenant_id}-{phone.lstrip('+')}")


def order_external_id(tenant_id: str, call_id: str) -> str:
    return _UNSAFE.sub("-", f"cs-{tenant_id}-call-{call_id}")


def _source(utm: Utm) -> SourcePayload | None:
    if utm.is_empty():
        return None
    return SourcePayload(source=utm.source, medium=utm.medium, campaign=utm.campaign,
                         keyword=utm.term, content=utm.content)


def _custom_fields(utm: Utm, fields: dict[str, str]) -> dict[str, str] | None:
    values = {code: getattr(utm, tag) for tag, code in fields.items()
              if tag in UTM_TO_SOURCE and getattr(utm, tag)}
    return values or None


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
    source = None if own else _source(event.utm)
    upload = CallUpload(
        externalId=event.call_id, date=event.started_at.astimezone(zone).strftime(
            "%Y-%m-%d %H:%M:%S"),
        type=event.direction.value,
        phone=event.client_phone, userId=mapped,
        code=employee.extension if mapped is None and employee else None,
        result=CALL_RESULT[event.status], duration=event.talk_seconds,
        durationWaiting=event.wait_seconds,
        recordUrl=str(event.recording_url) if event.recording_url else None, source=source,
        externalPhone=event.tracking_number, site=config.site_code,
        clientId=None if own else event.ga_client_id)
    from_client = event.direction is CallDirection.INBOUND and not own
    options = config.options
    ended = event.started_at + timedelta(seconds=event.wait_seconds + event.talk_seconds)
    hold = ended + timedelta(seconds=options.recording_wait_seconds) if (
        options.recording_wait_seconds and upload.result is CallResult.ANSWERED
        and upload.recordUrl is None) else None
    customer, order = _lead(event, config, manager, source) if from_client else (None, None)
    task = None
    if from_client and event.status is not CallStatus.ANSWERED and options.missed_call_task:
        local = event.started_at.astimezone(zone).strftime("%Y-%m-%d %H:%M")
        task = TaskDraft(
            text=f"Missed call from {event.client_phone}",
            commentary=(f"Call {event.call_id} at {local} to "
                        f"{event.tracking_number or 'the main line'}: {event.status.value}, "
                        f"waited {event.wait_seconds}s."),
            datetime=ended.astimezone(zone).strftime("%Y-%m-%d %H:%M"),
            phone=event.client_phone, mapped_user_id=mapped,
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
        customer=customer, order=order, task=task, callback=callback, hold_upload_until=hold)


def _lead(event: CallEvent, config: IntegrationConfig, manager: int | None,
          source: SourcePayload | None) -> tuple[CustomerPayload | None, OrderPayload | None]:
    """The customer and order a new caller's call makes (if the CRM does not know them): the
    same, by the same externalIds, whichever of the call's records plans them."""
    options = config.options
    customer = order = None
    if options.lead.create_customer:
        customer = CustomerPayload(
            externalId=customer_external_id(event.tenant_id, event.client_phone),
            phones=[CustomerPhone(number=event.client_phone)], managerId=manager,
            site=config.site_code, source=source,
            customFields=_custom_fields(event.utm, options.customer_utm_fields))
    if options.lead.create_order:
        order = OrderPayload(
            externalId=order_external_id(event.tenant_id, event.call_id),
            orderMethod=options.order_method, site=config.site_code, phone=event.client_phone,
            managerId=manager, source=source,
            customFields=_custom_fields(event.utm, options.order_utm_fields))
    return customer, order


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
    customer, order = _lead(event, config, manager, _source(event.utm))
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


def order_for(plan: CallPlan, *, new_lead: bool,
              customer: CustomerRef | None) -> OrderPayload | None:
    if plan.order is None or not new_lead:
        return None
    return plan.order.model_copy(update={"customer": customer})


def task_performer(plan: CallPlan, lookup: ManagerLookup) -> int | None:
    """The responsible manager: the CRM's, else the employee's, else the senior manager."""
    if plan.task is None:
        return None
    return (lookup.manager.id if lookup.manager else None) or plan.task.mapped_user_id \
        or plan.task.senior_manager_id


def task_for(plan: CallPlan, *, performer: int,
             customer: CustomerRef | None) -> TaskPayload | None:
    draft = plan.task
    if draft is None:
        return None
    return TaskPayload(text=draft.text, commentary=draft.commentary, datetime=draft.datetime,
                       performerId=performer, customer=customer, phone=draft.phone)
