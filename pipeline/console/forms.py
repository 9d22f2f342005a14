"""The console's forms read into command fields, checked before anything is sent."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

from pydantic import ValidationError

from pipeline.operations.window import ReplayWindow, calendar_days_window
from schemas.integration import IntegrationConfig, IntegrationOptions

__all__ = ["UTM_TAGS", "ZONES", "FormError", "LinkForm", "SettingsForm", "link_fields",
           "replay_fields", "settings_fields", "window_inputs"]

UTM_TAGS = ("source", "medium", "campaign", "term", "content")
ZONES = sorted(z for z in available_timezones() if "/" in z and not z.startswith("Etc/"))
IDENT = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
LOCAL_INPUT = "%Y-%m-%dT%H:%M"
OWN_NUMBERS_SPLIT = re.compile(r"[\n,;]")


class FormError(ValueError):
    """What is wrong with a form, by field, to show next to the fields."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


@dataclass
class SettingsForm:
    """The seed's settings page as values to fill the form with (never the key)."""

    values: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None) -> SettingsForm:
        config = config or {}
        options = IntegrationOptions.model_validate(config.get("options") or {})
        values: dict[str, Any] = {
            "portal_url": config.get("portal_url", ""),
            "admin_email": config.get("admin_email", ""),
            "site_code": config.get("site_code", ""),
            # A first set-up asks the account for its zone unless one is chosen ("").
            "timezone": config.get("timezone", ""),
            "module_code": config.get("module_code", "ringostat"),
            "lead_create_customer": options.lead.create_customer,
            "lead_create_order": options.lead.create_order,
            "lead_at_answer": options.lead.at_answer,
            "missed_call_task": options.missed_call_task,
            "callback_loop": options.callback_loop,
            "self_diagnosis": options.self_diagnosis,
            "order_method": options.order_method,
            "popup_max_age_seconds": options.popup_max_age_seconds,
            "recording_wait_seconds": options.recording_wait_seconds,
            "status_sync": options.status_sync,
            "own_numbers": "\n".join(options.own_numbers.numbers),
            "own_employee_extensions": options.own_numbers.employee_extensions,
            "send_after_reactivation": False,
            "senior_manager_id": "",
        }
        for tag in UTM_TAGS:
            values[f"utm_customer_{tag}"] = options.customer_utm_fields.get(tag, "")
            values[f"utm_order_{tag}"] = options.order_utm_fields.get(tag, "")
        return cls(values=values)


def _int(form: Mapping[str, str], name: str, errors: dict[str, str]) -> int:
    text = form.get(name, "").strip() or "0"
    try:
        return int(text)
    except ValueError:
        errors[name] = "a whole number"
        return 0


def _pydantic_errors(exc: ValidationError) -> dict[str, str]:
    found: dict[str, str] = {}
    for err in exc.errors(include_url=False, include_input=False):
        loc = [str(p) for p in err["loc"]]
        name = loc[-1] if loc else "form"
        if loc[:1] == ["options"] and len(loc) > 1:
            name = {"create_customer": "lead_create_customer",
                    "create_order": "lead_create_order"}.get(loc[-1], loc[-1])
        if loc[:3] == ["options", "own_numbers", "numbers"]:  # one textarea, a line each
            where = f"number {int(loc[3]) + 1}: " if len(loc) > 3 else ""
            found["own_numbers"] = f"{where}{err['msg']}"
            continue
        found[name] = str(err["msg"])
    return found


def settings_fields(tenant_id: str, form: Mapping[str, str],
                    current: Mapping[str, Any] | None) -> dict[str, Any]:
    """The `activate` command's fields from the settings form (the key still in clear: the
    caller seals it); FormError if anything is off. Options the form does not show keep the
    tenant's current values; a first-time set-up names its senior manager."""
    errors: dict[str, str] = {}
    if not IDENT.match(tenant_id):
        errors["tenant_id"] = "1-128 letters, digits or ._:-"
    api_key = form.get("api_key", "")
    if not api_key.strip():
        errors["api_key"] = "the portal's API key is needed to (re-)activate (write-only)"
    kept = IntegrationOptions.model_validate((current or {}).get("options") or {})
    options: dict[str, Any] = {
        **kept.model_dump(mode="json"),
        "lead": {"create_customer": "lead_create_customer" in form,
                 "create_order": "lead_create_order" in form,
                 "at_answer": "lead_at_answer" in form},
        "missed_call_task": "missed_call_task" in form,
        "callback_loop": "callback_loop" in form,
        "self_diagnosis": "self_diagnosis" in form,
        "status_sync": "status_sync" in form,
        "order_method": form.get("order_method", "").strip() or "phone",
        "popup_max_age_seconds": _int(form, "popup_max_age_seconds", errors),
        "recording_wait_seconds": _int(form, "recording_wait_seconds", errors),
        "customer_utm_fields": {t: v for t in UTM_TAGS
                                if (v := form.get(f"utm_customer_{t}", "").strip())},
        "order_utm_fields": {t: v for t in UTM_TAGS
                             if (v := form.get(f"utm_order_{t}", "").strip())},
        "own_numbers": {
            "numbers": [n.strip() for n in OWN_NUMBERS_SPLIT.split(form.get("own_numbers", ""))
                        if n.strip()],
            "employee_extensions": "own_employee_extensions" in form},
    }
    fields: dict[str, Any] = {
        "portal_url": form.get("portal_url", "").strip(),
        "admin_email": form.get("admin_email", "").strip(),
        "site_code": form.get("site_code", "").strip(),
        "timezone": form.get("timezone", "").strip() or "Europe/Moscow",
        "module_code": form.get("module_code", "").strip() or "ringostat",
        "options": options,
    }
    try:  # the config the worker will build from the command: refused here, not there
        IntegrationConfig.model_validate({**fields, "tenant_id": tenant_id,
                                          "api_key": api_key.strip() or "-"})
    except ValidationError as exc:
        errors.update(_pydantic_errors(exc))
    senior = form.get("senior_manager_id", "").strip()
    if senior:
        if senior.isdigit() and int(senior) >= 1:
            fields["senior_manager_id"] = int(senior)
        else:
            errors["senior_manager_id"] = "the CRM user id of an active manager"
    if errors:
        raise FormError(errors)
    fields["api_key"] = api_key.strip()
    fields["send_after_reactivation"] = "send_after_reactivation" in form
    if current is None and not form.get("timezone", "").strip():
        del fields["timezone"]  # the worker takes the account's (or keeps the default)
    return fields


@dataclass(frozen=True)
class LinkForm:
    employee_id: str
    extension: str | None
    crm_user_id: int


def link_fields(form: Mapping[str, str]) -> LinkForm:
    errors: dict[str, str] = {}
    employee = form.get("employee_id", "").strip()
    if not IDENT.match(employee):
        errors["employee_id"] = "the telephony employee id: letters, digits or ._:-"
    extension = form.get("extension", "").strip() or None
    if extension is not None and len(extension) > 32:
        errors["extension"] = "at most 32 characters"
    try:
        user = int(form.get("crm_user_id", ""))
    except ValueError:
        user = 0
    if user < 1:
        errors["crm_user_id"] = "choose a CRM manager"
    if errors:
        raise FormError(errors)
    return LinkForm(employee, extension, user)


def window_inputs(now: datetime, zone: ZoneInfo) -> tuple[str, str]:
    """The default replay window (today and the two days before) as local input values."""
    window = calendar_days_window(now, zone)
    return (window.start.astimezone(zone).strftime(LOCAL_INPUT),
            window.end.astimezone(zone).strftime(LOCAL_INPUT))


def replay_fields(form: Mapping[str, str], zone: ZoneInfo) -> dict[str, str]:
    """`since`/`until` from local date-time inputs, read in the tenant's time zone."""
    errors: dict[str, str] = {}
    moments: dict[str, datetime] = {}
    for name in ("since", "until"):
        text = form.get(name, "").strip()
        try:
            moments[name] = datetime.fromisoformat(text).replace(tzinfo=zone)
        except ValueError:
            errors[name] = "a date and time"
    if not errors:
        try:
            ReplayWindow(moments["since"], moments["until"])
        except ValueError as exc:
            errors["until"] = str(exc)
    if errors:
        raise FormError(errors)
    return {name: moment.isoformat() for name, moment in moments.items()}
