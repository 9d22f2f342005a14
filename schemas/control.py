"""Operator commands on the control topic (keyed by tenant), signed, and their results."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    HttpUrl,
    model_validator,
)

from schemas.integration import IntegrationOptions, ModuleCode, TimeZoneName

__all__ = [
    "ActivateCommand", "Command", "CommandResult", "DeactivateCommand", "EmployeesCommand",
    "LinkCommand", "RekeyCommand", "ReplayCommand", "SeniorCommand", "SignedCommand",
    "StatusCommand", "UnlinkCommand",
]

Ident = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:\-]+$")]
# pipeline.secrets: enc:v1:<kid>:<wrapped data key>:<nonce + ciphertext>, base64url.
Envelope = Annotated[str, Field(max_length=8192,
                                pattern=r"^enc:v1:[A-Za-z0-9_-]{1,32}:[A-Za-z0-9_=-]+:"
                                        r"[A-Za-z0-9_=-]+$")]


class _Command(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    command_id: Ident = Field(description="Unique per command; a repeated id is answered, "
                                          "not carried out again")
    tenant_id: Ident
    issued_at: AwareDatetime
    operator: str = Field(default="unknown", max_length=128, description="Who sent it")


class ActivateCommand(_Command):
    type: Literal["activate"] = "activate"
    portal_url: HttpUrl
    admin_email: EmailStr
    site_code: str = Field(min_length=1, max_length=255)
    api_key: Envelope = Field(description="The tenant's retailCRM key, encrypted for this "
                              "tenant with the KEK (the CLI does it); never in clear")
    # Left out: what the tenant has now (a re-activation after a new key changes nothing else),
    # else the defaults of IntegrationConfig.
    timezone: TimeZoneName | None = None
    module_code: ModuleCode | None = None
    options: IntegrationOptions | None = Field(
        default=None, description="All the tenant's options, replacing what it has (the "
        "console's settings form sends them whole)")
    options_patch: dict[str, Any] | None = Field(
        default=None, description="A JSON merge patch (RFC 7386) the worker applies to the "
        "tenant's current options (the CLI's --options): only the fields it names change, "
        "null puts a field back to its default",
        examples=[{"status_sync": True, "lead": {"create_order": False}}])
    send_after_reactivation: bool = Field(
        default=False, description="Replay today and the two days before, tenant time zone")
    senior_manager_id: int | None = Field(
        default=None, ge=1, description="First-time set-up: the senior manager (an active CRM "
        "manager), written to the mapping when the tenant has none")

    @model_validator(mode="after")
    def _one_way_to_set_options(self) -> ActivateCommand:
        if self.options is not None and self.options_patch is not None:
            raise ValueError("options (all of them) and options_patch (changes to the current "
                             "ones) cannot be sent together")
        return self


class DeactivateCommand(_Command):
    type: Literal["deactivate"] = "deactivate"
    reason: str = Field(default="", max_length=500)


class ReplayCommand(_Command):
    type: Literal["replay"] = "replay"
    since: AwareDatetime | None = Field(
        default=None, description="Default: 00:00 two days before today, tenant time zone")
    until: AwareDatetime | None = Field(default=None, description="Default: now")


class RekeyCommand(_Command):
    """Re-encrypt the tenant's stored API key under the current key-encryption key."""

    type: Literal["rekey"] = "rekey"


class StatusCommand(_Command):
    type: Literal["status"] = "status"


class LinkCommand(_Command):
    """Link a telephony employee to a CRM user; only an active manager can be linked."""

    type: Literal["link"] = "link"
    employee_id: Ident
    extension: str | None = Field(default=None, max_length=32)
    crm_user_id: int = Field(ge=1)


class UnlinkCommand(_Command):
    type: Literal["unlink"] = "unlink"
    employee_id: Ident


class SeniorCommand(_Command):
    """Choose the senior manager: the fallback for unmapped employees and missed calls."""

    type: Literal["senior"] = "senior"
    crm_user_id: int = Field(ge=1)


class EmployeesCommand(_Command):
    """List the mapping, the CRM managers (synced now) and the recent fallbacks."""

    type: Literal["employees"] = "employees"


Command = Annotated[ActivateCommand | DeactivateCommand | ReplayCommand | StatusCommand
                    | LinkCommand | UnlinkCommand | SeniorCommand | EmployeesCommand
                    | RekeyCommand,
                    Field(discriminator="type")]


class SignedCommand(BaseModel):
    """The record on the control topic: the command and an HMAC-SHA256 of its canonical JSON."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    command: dict[str, Any]
    signature: str = Field(pattern=r"^[0-9a-f]{64}$")


class CommandResult(BaseModel):
    """On the results topic, keyed by command id: accepted, progress, done, refused or failed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    command_id: str
    tenant_id: str | None = None
    type: str | None = None
    status: Literal["accepted", "progress", "done", "refused", "failed"]
    message: str = ""
    data: dict[str, Any] = Field(default_factory=dict)
    at: AwareDatetime
