"""A tenant's retailCRM integration: where the portal is, how to reach it, and what to create."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    HttpUrl,
    SecretStr,
    ValidationInfo,
    field_validator,
)

from schemas.phone import own_number_form

__all__ = ["ENVELOPE_PREFIX", "INTEGRATION_CODE", "IntegrationConfig", "IntegrationOptions",
           "KeySealer", "LeadPolicy", "ModuleCode", "OwnNumbers", "RecordBody", "SignedRecord",
           "TimeZoneName", "merge_patch"]

ENVELOPE_PREFIX = "enc:"  # pipeline.secrets writes enc:v1:<kid>:…
# The telephony module's integrationCode; retailCRM refuses a module whose `code` does not start
# with it ("Code prefix must match integrationCode").
INTEGRATION_CODE = "ringostat"
MODULE_CODE_PATTERN = r"^[A-Za-z0-9_\-]+$"


class KeySealer(Protocol):
    """Encrypts and decrypts a tenant's API key (pipeline.secrets.KeyRing)."""

    def encrypt(self, secret: str, *, tenant_id: str) -> str: ...

    def decrypt(self, envelope: str, *, tenant_id: str) -> str: ...


@functools.cache
def _zones() -> frozenset[str]:
    # "localtime" is this machine's own zone, not a name a tenant can mean.
    return frozenset(available_timezones() - {"localtime"})


def _check_zone(name: str) -> str:
    """An IANA zone name this machine has: not a folder ("Europe"), a path, or "localtime"
    (ZoneInfo opens those, or fails with OSError rather than ZoneInfoNotFoundError)."""
    if name not in _zones():
        raise ValueError(f"unknown IANA time zone {name[:64]!r}")
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"unknown IANA time zone {name[:64]!r}") from None
    return name


TimeZoneName = Annotated[str, AfterValidator(_check_zone)]


def _check_module_code(code: str) -> str:
    if not code.startswith(INTEGRATION_CODE):
        raise ValueError(f"the module code must start with {INTEGRATION_CODE!r}, its "
                         "integrationCode (retailCRM refuses it otherwise: \"Code prefix must "
                         f"match integrationCode\"), e.g. {INTEGRATION_CODE!r} or "
                         f"'{INTEGRATION_CODE}-acme'")
    return code


# A telephony module instance's code, as a new set-up may choose it.
ModuleCode = Annotated[str, Field(min_length=1, max_length=128, pattern=MODULE_CODE_PATTERN),
                       AfterValidator(_check_module_code)]


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge key by key, null removes, the rest replaces."""
    if not isinstance(patch, Mapping):
        return patch
    merged = dict(target) if isinstance(target, Mapping) else {}
    for name, value in patch.items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = merge_patch(merged.get(name), value)
    return merged


class LeadPolicy(BaseModel):
    """What a call from a number the CRM does not know creates (per tenant)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    create_customer: bool = True
    create_order: bool = True
    at_answer: bool = Field(
        default=False, description="Make a new caller's customer and order when the call is "
        "answered (its `answered` record), so the manager sees them while still on the call; "
        "the `ended` record then only completes the call history. A call whose `answered` "
        "record never comes makes them at its end, as without the option")


def _distinct(numbers: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(numbers))


class OwnNumbers(BaseModel):
    """The tenant's own lines: a call from one is recorded in the call history, never a lead."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    numbers: Annotated[tuple[Annotated[str, AfterValidator(own_number_form)], ...],
                       AfterValidator(_distinct)] = Field(
        default=(), max_length=1000,
        description="The tenant's own numbers (its tracking numbers, office lines, staff "
        "mobiles): a call from one uploads to the call history without its UTM source and "
        "GA client id, and creates no customer, order or task. International (+380 44 333 44 "
        "00, or bare 380443334400) is kept as E.164; a national form with its trunk prefix "
        "(044 333 44 00) is read in the caller's own country",
        examples=[["+380443334400", "044 333 44 01"]])
    employee_extensions: bool = Field(
        default=True, description="Also count as own every linked employee's extension that "
        "is a full phone number (a mobile used as an extension); short ones like 101 are "
        "never a caller's number")


class IntegrationOptions(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    lead: LeadPolicy = Field(default_factory=LeadPolicy)
    missed_call_task: bool = Field(default=True, description="Create a task on a missed call")
    callback_loop: bool = Field(
        default=False, description="Close the call-back loop: a caller's missed calls share "
        "one open task (a later one is noted on it); their next answered call, or a "
        "successful call to them, completes it. Needs /api/tasks/{id}/edit for the key")
    self_diagnosis: bool = Field(
        default=False, description="Tell the senior manager, with one CRM task a problem, of "
        "a set-up fault only the operator can mend: an employee's extension linked to no "
        "manager, a method the key is denied, a shop code retailCRM refuses. A new task only "
        "if the problem recurs after its task was completed. Needs /api/tasks/create")
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
    own_numbers: OwnNumbers = Field(
        default_factory=OwnNumbers, description="Calls from the tenant's own numbers (these, "
        "the call's own tracking number, employees' extensions) are never leads")

    def patched(self, patch: Mapping[str, Any]) -> IntegrationOptions:
        """These options with a JSON merge patch applied (a field set to null: its default)."""
        return IntegrationOptions.model_validate(merge_patch(self.model_dump(mode="json"), patch))


class IntegrationConfig(BaseModel):
    """Set up by an operator; the API key is a secret and never prints."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tenant_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:\-]+$")
    portal_url: HttpUrl = Field(description="retailCRM portal, e.g. https://acme.retailcrm.ru")
    admin_email: EmailStr
    site_code: str = Field(min_length=1, max_length=255, description="Shop (site) code")
    api_key: SecretStr = Field(min_length=1)
    timezone: TimeZoneName = Field(default="Europe/Moscow", description="IANA time zone")
    module_code: str = Field(default=INTEGRATION_CODE, min_length=1, max_length=128,
                             pattern=MODULE_CODE_PATTERN,
                             description="Code of the telephony integration module instance; "
                             f"starts with its integrationCode, {INTEGRATION_CODE!r}")
    options: IntegrationOptions = Field(default_factory=IntegrationOptions)

    @field_validator("portal_url")
    @classmethod
    def _https_or_loopback(cls, url: HttpUrl) -> HttpUrl:
        # retailCRM is HTTPS only; plain HTTP is allowed for a double on this machine's loopback.
        if url.scheme != "https" and url.host not in {"127.0.0.1", "localhost", "::1", "[::1]"}:
            raise ValueError("retailCRM portals are reached over https (plain http only on "
                             "this machine's loopback, for a test double)")
        return url

    @field_validator("module_code")
    @classmethod
    def _prefixed(cls, code: str, info: ValidationInfo) -> str:
        # A config stored before the rule keeps loading (its tenant keeps its events); a new or
        # changed config must follow it.
        if (info.context or {}).get("stored"):
            return code
        return _check_module_code(code)

    @field_validator("api_key")
    @classmethod
    def _not_an_envelope(cls, key: SecretStr) -> SecretStr:
        # A stored config is opened with from_stored; an envelope is never a usable key.
        if key.get_secret_value().startswith(ENVELOPE_PREFIX):
            raise ValueError("the key is still encrypted (open stored configs with from_stored)")
        return key

    def to_stored(self, sealer: KeySealer) -> dict[str, Any]:
        """A JSON-ready dict whose key is an envelope bound to this tenant, for topics and
        tables."""
        data = self.model_dump(mode="json")
        data["api_key"] = sealer.encrypt(self.api_key.get_secret_value(),
                                         tenant_id=self.tenant_id)
        return data

    @classmethod
    def from_stored(cls, data: dict[str, Any], sealer: KeySealer) -> IntegrationConfig:
        """The config of `to_stored`, its key decrypted (in this process's memory only)."""
        envelope = data.get("api_key")
        tenant_id = data.get("tenant_id")
        if not isinstance(envelope, str) or not envelope.startswith(ENVELOPE_PREFIX):
            raise ValueError("the stored config's api_key is not an envelope")
        if not isinstance(tenant_id, str):
            raise ValueError("the stored config has no tenant_id")
        return cls.model_validate({**data, "api_key": sealer.decrypt(envelope,
                                                                     tenant_id=tenant_id)},
                                  context={"stored": True})

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class RecordBody(BaseModel):
    """What the control desk signs: a tenant's config or mapping and when it was signed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["integration", "mapping"]
    signed_at: AwareDatetime = Field(description="Aware; a record older than the stored one is "
                                            "refused as stale")
    record: dict[str, Any] = Field(description="IntegrationConfig.to_stored() or an "
                                               "EmployeeMapping")


class SignedRecord(BaseModel):
    """A record on callsync.integrations / callsync.employee-mappings (and in their tables):
    the body and an HMAC-SHA256 of its canonical JSON (pipeline.signing)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    body: dict[str, Any]
    signature: str = Field(pattern=r"^[0-9a-f]{64}$")
