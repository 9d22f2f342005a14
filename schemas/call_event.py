"""The call event contract that telephony producers publish to the call topic (version 1)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, HttpUrl

from schemas.phone import E164

__all__ = ["CallDirection", "CallEvent", "CallStage", "CallStatus", "Employee", "Utm"]

Ident = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:\-]+$")]


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

    schema_version: Literal[1] = Field(default=1, description="Contract version")
    call_id: Ident = Field(description="Unique id of the call in the call-tracking service",
                           examples=["rs-5f0c2a91"])
    tenant_id: Ident = Field(description="Call-tracking project connected to one retailCRM portal",
                             examples=["acme"])
    stage: CallStage = Field(default=CallStage.ENDED, description="started, answered or ended")
    started_at: AwareDatetime = Field(description="Call start, with a UTC offset",
                                      examples=["2026-11-25T10:03:00+02:00"])
    direction: CallDirection = Field(description="in (client called) or out (employee called)")
    client_phone: E164
    tracking_number: E164 | None = Field(
        default=None, description="Tracking (DID) number the client dialled; E.164")
    employee: Employee | None = Field(default=None, description="Who handled the call, if anyone")
    status: CallStatus = Field(description="Outcome of the call")
    talk_seconds: int = Field(default=0, ge=0, le=86_400, description="Conversation length")
    wait_seconds: int = Field(default=0, ge=0, le=86_400, description="Time before pick-up")
    recording_url: HttpUrl | None = Field(default=None, description="Recording; may come later")
    utm: Utm = Field(default_factory=Utm, description="UTM tags of the visit that led to the call")
    ga_client_id: str | None = Field(default=None, max_length=128,
                                     description="Google Analytics client id")
