"""A tenant's retailCRM integration: where the portal is, how to reach it, and what to create."""

from __future__ import annotations

from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    HttpUrl,
    SecretStr,
    field_validator,
)

__all__ = ["IntegrationConfig", "IntegrationOptions", "LeadPolicy", "TimeZoneName"]


def _check_zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown IANA time zone {name!r}") from None
    return name


TimeZoneName = Annotated[str, AfterValidator(_check_zone)]


class LeadPolicy(BaseModel):
    """What a call from a number the CRM does not know creates (per tenant)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    create_customer: bool = True
    create_order: bool = True


class IntegrationOptions(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    lead: LeadPolicy = Field(default_factory=LeadPolicy)
    missed_call_task: bool = Field(default=True, description="Create a task on a missed call")
    order_method: str = Field(default="phone", description="orderMethod code for lead orders")
    popup_max_age_seconds: int = Field(
        default=60, ge=0, description="Never pop up a call event older than this")
    status_sync: bool = Field(default=False, description="Mirror on-call state to user status")
    recording_wait_seconds: int = Field(
        default=0, ge=0, le=3600,
        description="Hold the upload of an answered call that ended without a recording this "
        "long after its end, for a later record that brings the recording (retailCRM keeps a "
        "call's first upload); 0 = upload at once")
    send_after_reactivation: bool = Field(
        default=False, description="Replay the last three days when re-activated")
    customer_utm_fields: dict[str, str] = Field(
        default_factory=dict, description="UTM tag -> customer custom-field code",
        examples=[{"source": "ringostat_utm_source"}])
    order_utm_fields: dict[str, str] = Field(
        default_factory=dict, description="UTM tag -> order custom-field code")


class IntegrationConfig(BaseModel):
    """Set up by an operator; the API key is a secret and never prints."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tenant_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:\-]+$")
    portal_url: HttpUrl = Field(description="retailCRM portal, e.g. https://acme.retailcrm.ru")
    admin_email: EmailStr
    site_code: str = Field(min_length=1, max_length=255, description="Shop (site) code")
    api_key: SecretStr = Field(min_length=1)
    timezone: TimeZoneName = Field(default="Europe/Moscow", description="IANA time zone")
    module_code: str = Field(default="ringostat", min_length=1, max_length=128,
                             pattern=r"^[A-Za-z0-9_\-]+$",
                             description="Code of the telephony integration module instance")
    options: IntegrationOptions = Field(default_factory=IntegrationOptions)

    @field_validator("portal_url")
    @classmethod
    def _https_or_loopback(cls, url: HttpUrl) -> HttpUrl:
        # retailCRM is HTTPS only; plain HTTP is allowed for a double on this machine's loopback.
        if url.scheme != "https" and url.host not in {"127.0.0.1", "localhost", "::1", "[::1]"}:
            raise ValueError("retailCRM portals are reached over https")
        return url

    def to_stored(self) -> dict[str, object]:
        """A JSON-ready dict with the key in clear, for the integrations table only."""
        data = self.model_dump(mode="json")
        data["api_key"] = self.api_key.get_secret_value()
        return data

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)
