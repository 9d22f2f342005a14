"""The call event contract that telephony producers publish to the call topic (version 1)."""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    HttpUrl,
    Strict,
)

from schemas.phone import E164

__all__ = ["EARLIEST_YEAR", "IDENT_MAX_LENGTH", "IDENT_PATTERN", "LATEST_YEAR",
           "STARTED_AT_PATTERN", "CallDirection", "CallEvent", "CallStage", "CallStatus",
           "Employee", "Utm"]

# A tenant's or an employee's id: what a record key must be to name a tenant.
IDENT_PATTERN = r"^[A-Za-z0-9._:\-]+$"
IDENT_MAX_LENGTH = 128
Ident = Annotated[str, Field(min_length=1, max_length=IDENT_MAX_LENGTH, pattern=IDENT_PATTERN)]
# The published schema says "integer": "12", true and 12.0 are refused, not coerced.
JsonInt = Annotated[int, Strict()]

# Planning formats and shifts the start; years far outside this range overflow or mis-format.
# Plain groups only, so that every JSON Schema regex dialect reads the published pattern.
EARLIEST_YEAR, LATEST_YEAR = 2000, 2100
_AFTER_YEAR = (r"-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?"
               r"([Zz]|[+-][0-9]{2}:[0-9]{2})")
_RFC3339 = re.compile(r"[0-9]{4}" + _AFTER_YEAR)  # used with fullmatch
STARTED_AT_PATTERN = r"^(20[0-9]{2}|2100)" + _AFTER_YEAR + "$"  # the same, year bounded


def _json_type(value: object) -> str:
    names = {bool: "boolean", int: "number", float: "number", str: "string", dict: "object",
             list: "array", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _rfc3339_text(value: object) -> object:
    """Only an RFC 3339 string: pydantic alone would also read epoch numbers and "1700000000"."""
    if isinstance(value, datetime):  # built in Python, not read from JSON
        return value
    if not isinstance(value, str):
        raise ValueError(f"must be an RFC 3339 date-time string, not a {_json_type(value)}")
    if not _RFC3339.fullmatch(value):
        raise ValueError("must be an RFC 3339 date-time with seconds and an offset, "
                         "like 2026-11-25T10:03:00+02:00")
    return value


def _sane_year(value: datetime) -> datetime:
    if not EARLIEST_YEAR <= value.year <= LATEST_YEAR:
        raise ValueError(f"year {value.year} is outside {EARLIEST_YEAR}-{LATEST_YEAR}")
    return value


def _json_integer(value: object) -> object:
    if type(value) is not int:  # Literal[1] alone accepts true and 1.0
        raise ValueError(f"must be a JSON integer, not a {_json_type(value)}")
    return value


StartedAt = Annotated[AwareDatetime, BeforeValidator(_rfc3339_text), AfterValidator(_sane_year)]


class CallDirection(StrEnum):
    INBOUND = "in"
    OUTBOUND = "out"


class CallStage(StrEnum):
    """Where in its life the call was when the record was published."""

    STARTED = "started"
    ANSWERED = "answered"
    ENDED = "ended"


class CallStatus(StrEnum):
    """Outcome of a call; meaningful once the call has ended."""

    IN_PROGRESS = "in_progress"
    ANSWERED = "answered"
    NO_ANSWER = "no_answer"
    BUSY = "busy"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Employee(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: Ident = Field(description="Employee id in the call-tracking project", examples=["emp-17"])
    extension: str | None = Field(
        default=None, max_length=32, description="Internal extension (SIP) of the employee",
        examples=["101"],
    )


class Utm(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str | None = Field(default=None, max_length=255, examples=["google"])
    medium: str | None = Field(default=None, max_length=255, examples=["cpc"])
    campaign: str | None = Field(default=None, max_length=255, examples=["brand"])
    term: str | None = Field(default=None, max_length=255, examples=["buy sofa"])
    content: str | None = Field(default=None, max_length=255, examples=["ad-3"])

    def is_empty(self) -> bool:
        return not any((self.source, self.medium, self.campaign, self.term, self.content))


class CallEvent(BaseModel):
    """One call, as the call-tracking service reports it. Keyed on the topic by `tenant_id`."""

    model_config = ConfigDict(
        frozen=True, extra="forbid",
        json_schema_extra={"$id": "https://callsync.dev/schemas/call-event.v1.json"},
    )

    schema_version: Annotated[Literal[1], BeforeValidator(_json_integer)] = Field(
        default=1, description="Contract version")
    call_id: Ident = Field(description="Unique id of the call in the call-tracking service",
                           examples=["rs-5f0c2a91"])
    tenant_id: Ident = Field(description="Call-tracking project connected to one retailCRM portal",
                             examples=["acme"])
    stage: CallStage = Field(default=CallStage.ENDED, description="started, answered or ended")
    started_at: StartedAt = Field(
        description="Call start: an RFC 3339 date-time with seconds and a UTC offset (Z or "
        f"±hh:mm), never an epoch number. Its year, as written, is {EARLIEST_YEAR} through "
        f"{LATEST_YEAR}; a start outside that range is refused as a producer error.",
        examples=["2026-11-25T10:03:00+02:00"],
        json_schema_extra={"pattern": STARTED_AT_PATTERN})
    direction: CallDirection = Field(description="in (client called) or out (employee called)")
    client_phone: E164
    tracking_number: E164 | None = Field(
        default=None, description="Tracking (DID) number the client dialled; E.164")
    employee: Employee | None = Field(default=None, description="Who handled the call, if anyone")
    status: CallStatus = Field(description="Outcome of the call")
    talk_seconds: JsonInt = Field(default=0, ge=0, le=86_400, description="Conversation length")
    wait_seconds: JsonInt = Field(default=0, ge=0, le=86_400, description="Time before pick-up")
    recording_url: HttpUrl | None = Field(default=None, description="Recording; may come later")
    utm: Utm = Field(default_factory=Utm, description="UTM tags of the visit that led to the call")
    ga_client_id: str | None = Field(default=None, max_length=128,
                                     description="Google Analytics client id")
