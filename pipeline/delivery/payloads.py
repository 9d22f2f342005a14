"""The retailCRM payloads a call makes: its upload, the lead's customer and order, the task."""

from __future__ import annotations

import re
from datetime import datetime
from zoneinfo import ZoneInfo

from pipeline.delivery.callplan import CallPlan, TaskDraft
from schemas.call_event import CallEvent, CallStatus, Utm
from schemas.crm import (
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

__all__ = [
    "CALL_RESULT", "HANGUP_STATUS", "call_upload", "customer_external_id", "lead_payloads",
    "missed_call_task", "order_external_id", "order_for", "task_for", "task_marker", "utm_source",
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


def customer_external_id(tenant_id: str, phone: str) -> str:
    return _UNSAFE.sub("-", f"cs-{tenant_id}-{phone.lstrip('+')}")


def order_external_id(tenant_id: str, call_id: str) -> str:
    return _UNSAFE.sub("-", f"cs-{tenant_id}-call-{call_id}")


def utm_source(utm: Utm) -> SourcePayload | None:
    if utm.is_empty():
        return None
    return SourcePayload(source=utm.source, medium=utm.medium, campaign=utm.campaign,
                         keyword=utm.term, content=utm.content)


def _custom_fields(utm: Utm, fields: dict[str, str]) -> dict[str, str] | None:
    values = {code: getattr(utm, tag) for tag, code in fields.items()
              if tag in UTM_TO_SOURCE and getattr(utm, tag)}
    return values or None


def call_upload(event: CallEvent, config: IntegrationConfig, *, mapped: int | None,
                source: SourcePayload | None, own: bool) -> CallUpload:
    """The call's history entry; a call of the tenant's own number carries no attribution."""
    employee = event.employee
    return CallUpload(
        externalId=event.call_id, date=event.started_at.astimezone(config.zone).strftime(
            "%Y-%m-%d %H:%M:%S"),
        type=event.direction.value,
        phone=event.client_phone, userId=mapped,
        code=employee.extension if mapped is None and employee else None,
        result=CALL_RESULT[event.status], duration=event.talk_seconds,
        durationWaiting=event.wait_seconds,
        recordUrl=str(event.recording_url) if event.recording_url else None, source=source,
        externalPhone=event.tracking_number, site=config.site_code,
        clientId=None if own else event.ga_client_id)


def lead_payloads(event: CallEvent, config: IntegrationConfig, manager: int | None,
                  source: SourcePayload | None
                  ) -> tuple[CustomerPayload | None, OrderPayload | None]:
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


def task_marker(call_id: str) -> str:
    """How a call's task names it in its commentary: a task an earlier try made is found by it."""
    return f"Call {call_id} "


def missed_call_task(event: CallEvent, zone: ZoneInfo, *, ended: datetime, mapped: int | None,
                     senior_manager_id: int | None) -> TaskDraft:
    """The call-back task a missed call from a caller opens, due when the call ended."""
    local = event.started_at.astimezone(zone).strftime("%Y-%m-%d %H:%M")
    return TaskDraft(
        text=f"Missed call from {event.client_phone}",
        commentary=(f"{task_marker(event.call_id)}at {local} to "
                    f"{event.tracking_number or 'the main line'}: {event.status.value}, "
                    f"waited {event.wait_seconds}s."),
        datetime=ended.astimezone(zone).strftime("%Y-%m-%d %H:%M"),
        phone=event.client_phone, mapped_user_id=mapped,
        senior_manager_id=senior_manager_id)


def order_for(plan: CallPlan, *, new_lead: bool,
              customer: CustomerRef | None) -> OrderPayload | None:
    if plan.order is None or not new_lead:
        return None
    return plan.order.model_copy(update={"customer": customer})


def task_for(plan: CallPlan, *, performer: int,
             customer: CustomerRef | None) -> TaskPayload | None:
    draft = plan.task
    if draft is None:
        return None
    return TaskPayload(text=draft.text, commentary=draft.commentary, datetime=draft.datetime,
                       performerId=performer, customer=customer, phone=draft.phone)
