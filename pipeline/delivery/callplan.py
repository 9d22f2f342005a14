"""What a call needs from retailCRM, as planning decided it: the plan and its steps."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from schemas.call_event import CallStage
from schemas.crm import CallEventPayload, CallUpload, CustomerPayload, OrderPayload

__all__ = ["CallPlan", "CallbackStep", "Popup", "StatusAction", "StatusChange", "TaskDraft"]

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
    # An answered call without a recording waits this long for a record that brings one, and
    # never longer than `hold_seconds` (the tenant's wait) after its lane got it: a record
    # dated in the future would otherwise hold its partition's commits until that date.
    hold_upload_until: datetime | None = None
    hold_seconds: int = 0

    @property
    def is_empty(self) -> bool:
        return not (self.popups or self.upload or self.lookup or self.status_change)
