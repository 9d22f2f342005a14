"""Outbound retailCRM v5 payloads (the JSON put into one form field each); unknown keys are bugs."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AdditionalCode",
    "CallEventPayload",
    "CallResult",
    "CallUpload",
    "CustomerPayload",
    "CustomerPhone",
    "CustomerRef",
    "ExternalPhone",
    "HangupStatus",
    "IntegrationModulePayload",
    "Integrations",
    "OrderPayload",
    "SourcePayload",
    "TaskEdit",
    "TaskPayload",
    "TelephonyConfiguration",
]

CRM_DATETIME = r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$"
CRM_TASK_DATETIME = r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}$"
CrmDateTime = Annotated[str, Field(pattern=CRM_DATETIME, description="Y-m-d H:i:s, portal zone")]


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def wire(self) -> dict[str, object]:
        """The JSON object as retailCRM expects it: camelCase names, no nulls."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class CallResult(StrEnum):
    """`result` of telephony/calls/upload (note: `no answer`)."""

    ANSWERED = "answered"
    BUSY = "busy"
    FAILED = "failed"
    NO_ANSWER = "no answer"
    NOT_ALLOWED = "not allowed"
    UNKNOWN = "unknown"


class HangupStatus(StrEnum):
    """`hangupStatus` of telephony/call/event (note: `no answered`)."""

    ANSWERED = "answered"
    NO_ANSWERED = "no answered"
    BUSY = "busy"
    CANCEL = "cancel"
    FAILED = "failed"


class SourcePayload(_Payload):
    """UTM attribution: utm_term goes to `keyword`."""

    source: str | None = None
    medium: str | None = None
    campaign: str | None = None
    keyword: str | None = None
    content: str | None = None


class CallUpload(_Payload):
    externalId: str = Field(min_length=1)
    date: CrmDateTime
    type: Literal["in", "out"]
    phone: str = Field(min_length=1)
    userId: int | None = None
    code: str | None = None
    result: CallResult
    duration: int = Field(ge=0)
    durationWaiting: int = Field(ge=0)
    recordUrl: str | None = None
    source: SourcePayload | None = None
    externalPhone: str | None = None
    site: str | None = None
    clientId: str | None = None


class CallEventPayload(_Payload):
    phone: str = Field(min_length=1)
    type: Literal["in", "out", "hangup"]
    codes: list[str] | None = None
    userIds: list[int] | None = None
    hangupStatus: HangupStatus | None = None
    externalPhone: str | None = None
    site: str | None = None
    callExternalId: str | None = None


class CustomerPhone(_Payload):
    number: str


class CustomerPayload(_Payload):
    externalId: str | None = None
    firstName: str | None = None
    lastName: str | None = None
    phones: list[CustomerPhone] | None = None
    managerId: int | None = None
    site: str | None = None
    source: SourcePayload | None = None
    customFields: dict[str, str] | None = None


class CustomerRef(_Payload):
    id: int | None = None
    externalId: str | None = None
    site: str | None = None


class OrderPayload(_Payload):
    externalId: str | None = None
    orderMethod: str | None = None
    status: str | None = None
    site: str | None = None
    firstName: str | None = None
    lastName: str | None = None
    phone: str | None = None
    managerId: int | None = None
    customer: CustomerRef | None = None
    source: SourcePayload | None = None
    customFields: dict[str, str] | None = None
    customerComment: str | None = None
    managerComment: str | None = None


class TaskPayload(_Payload):
    text: str = Field(min_length=1)
    commentary: str | None = None
    datetime: str | None = Field(default=None, pattern=CRM_TASK_DATETIME)
    performerId: int
    customer: CustomerRef | None = None
    phone: str | None = None
    phoneSite: str | None = None


class TaskEdit(_Payload):
    """`tasks/{id}/edit`: what changes; the rest of the task stays as it is."""

    commentary: str | None = None
    complete: bool | None = None


class AdditionalCode(_Payload):
    userId: int
    code: str


class ExternalPhone(_Payload):
    siteCode: str
    externalPhone: str


class TelephonyConfiguration(_Payload):
    makeCallUrl: str | None = None
    allowEdit: bool | None = None
    inputEventSupported: bool | None = None
    outputEventSupported: bool | None = None
    hangupEventSupported: bool | None = None
    changeUserStatusUrl: str | None = None
    additionalCodes: list[AdditionalCode] | None = None
    externalPhones: list[ExternalPhone] | None = None


class Integrations(_Payload):
    telephony: TelephonyConfiguration | None = None


class IntegrationModulePayload(_Payload):
    code: str
    integrationCode: str
    active: bool
    freeze: bool | None = None
    name: str | None = None
    logo: str | None = None
    baseUrl: str | None = None
    clientId: str | None = None
    accountUrl: str | None = None
    integrations: Integrations | None = None
