"""What activation checks before it says OK: a valid set-up, a portal that answers, a key
that reaches every method callsync uses and the tenant's shop."""

from __future__ import annotations

import logging
from typing import Any

from pydantic import TypeAdapter, ValidationError

from pipeline.crm import errors as e
from pipeline.crm.client import RetailCRMClient
from pipeline.crm.methods import (
    REFERENCE_SITES,
    REQUIRED_METHODS,
    SETTINGS,
    TASK_EDIT,
    TELEPHONY_UPLOAD_METHODS,
)
from pipeline.crm.models import Credentials
from schemas.control import ActivateCommand
from schemas.integration import IntegrationConfig, IntegrationOptions, TimeZoneName

__all__ = ["DEFAULT_TIMEZONE", "KEPT_ON_REACTIVATION", "Refused", "account_zone",
           "account_zone_config", "check_key", "config_for"]

log = logging.getLogger(__name__)

# What a re-activation that leaves them out keeps as the tenant has them.
KEPT_ON_REACTIVATION = ("timezone", "module_code", "options")
DEFAULT_TIMEZONE = str(IntegrationConfig.model_fields["timezone"].default)
TimeZoneAdapter: TypeAdapter[str] = TypeAdapter(TimeZoneName)


class Refused(Exception):
    """A command the desk does not carry out; the message says why."""


def config_for(cmd: ActivateCommand, current: IntegrationConfig | None,
               api_key: str) -> IntegrationConfig:
    """The config the command sets up: what it leaves out stays as the tenant has it (else
    the defaults); options_patch changes only the options it names. Refused, with what is
    wrong, if the result is not a valid set-up."""
    kept: dict[str, Any] = {}
    for name in KEPT_ON_REACTIVATION:
        value = getattr(cmd, name)
        if value is None and current is not None:
            value = getattr(current, name)
        if value is not None:
            kept[name] = value
    if cmd.options_patch is not None:
        base = current.options if current is not None else IntegrationOptions()
        try:
            kept["options"] = base.patched(cmd.options_patch)
        except ValidationError as exc:
            raise Refused("the options patch does not give valid options: "
                          + _problems(exc, prefix="options")) from None
    try:
        return IntegrationConfig.model_validate({
            **kept, "tenant_id": cmd.tenant_id, "portal_url": cmd.portal_url,
            "admin_email": cmd.admin_email, "site_code": cmd.site_code,
            "api_key": api_key})
    except ValidationError as exc:
        raise Refused(f"the set-up is not valid: {_problems(exc)}") from None


async def check_key(crm: RetailCRMClient, config: IntegrationConfig) -> Credentials:
    """The portal answers, the key reaches every method callsync uses and the shop; what the
    key may do, as /api/credentials says."""
    try:
        credentials = await crm.credentials()
    except e.CRMTransportError as exc:
        cause = str(exc).removeprefix(f"retailCRM {exc.method}: ")
        raise Refused(f"the portal {config.portal_url} cannot be reached ({cause}): check "
                      "the address, and that the portal is up") from None
    except e.AccountNotFound as exc:
        raise Refused(f"no retailCRM account at {config.portal_url} "
                      f"({exc.error_msg or 'Account does not exist.'}): check the "
                      "address") from None
    except e.CRMAuthorizationError as exc:
        raise Refused(f"the portal refused the key: {exc.error_msg or exc}") from None
    missing = [m for m in REQUIRED_METHODS if m not in credentials.credentials]
    uploads = [m for m in TELEPHONY_UPLOAD_METHODS if m not in credentials.credentials]
    problems = []
    if missing:
        problems.append(f"the key lacks {len(missing)} of the {len(REQUIRED_METHODS)} "
                        f"methods the integration needs: {', '.join(missing)}")
    if uploads:
        problems.append(f"the key lacks {', '.join(uploads)}: call history and pop-ups "
                        "are sent with them (they are not in the setup guide's list, but "
                        "the key needs them too)")
    if config.options.callback_loop and TASK_EDIT not in credentials.credentials:
        problems.append(f"the key lacks {TASK_EDIT}, which the callback_loop option needs to "
                        "complete a missed call's task (not in the setup guide's list): allow "
                        "it for the key, or turn the option off")
    if problems:
        raise Refused("; ".join(problems))
    await _check_shop(crm, config.site_code, credentials)
    return credentials


async def account_zone(crm: RetailCRMClient, credentials: Credentials) -> tuple[str | None, str]:
    """The account's own time zone, where the key may read it (/api/settings) and this machine
    knows the zone, and where it came from; None and why not otherwise (the caller keeps the
    default and says so)."""
    if SETTINGS not in credentials.credentials:
        return None, f"the key cannot read {SETTINGS}"
    try:
        zone = await crm.account_timezone()
    except e.RetailCRMError as exc:
        log.warning("the account's time zone could not be read: %s", exc)
        return None, f"{SETTINGS} did not answer ({type(exc).__name__})"
    try:
        return TimeZoneAdapter.validate_python(zone), f"the account's own ({SETTINGS})"
    except ValidationError:
        return None, f"{SETTINGS} names no zone known here"


async def account_zone_config(cmd: ActivateCommand, config: IntegrationConfig,
                              crm: RetailCRMClient, credentials: Credentials, api_key: str
                              ) -> tuple[IntegrationConfig, str]:
    """For a first set-up that names no time zone: the config with the account's own (retailCRM
    reads the naive times callsync sends in it, and the replay window's days are its days), and
    where the zone came from."""
    zone, source = await account_zone(crm, credentials)
    if zone is None:
        return config, (f"the default: {source}; name the account's zone with --timezone "
                        f"if it is not {DEFAULT_TIMEZONE}")
    return config_for(cmd.model_copy(update={"timezone": zone}), None, api_key), source


async def _check_shop(crm: RetailCRMClient, site: str, credentials: Credentials) -> None:
    available = credentials.sitesAvailable
    if credentials.siteAccess == "access_selective":
        if site not in available:
            raise Refused(f"the key cannot reach the shop {site!r}: it is limited to "
                          f"{', '.join(map(repr, available)) or 'no shop'}")
        return
    # A key that reaches every shop: the shop must still exist.
    if REFERENCE_SITES in credentials.credentials:
        shops = sorted(await crm.sites())
        if site not in shops:
            raise Refused(f"the portal has no shop {site!r}; its shops: "
                          f"{', '.join(map(repr, shops)) or 'none'}")
        return
    if available:
        if site not in available:
            raise Refused(f"the portal has no shop {site!r}; the key's shops: "
                          f"{', '.join(map(repr, available))}")
        return
    raise Refused(f"the shop {site!r} cannot be checked: the key reaches every shop, "
                  f"/api/credentials names none and the key lacks {REFERENCE_SITES}; "
                  f"allow {REFERENCE_SITES} for the key")


def _problems(exc: ValidationError, *, prefix: str = "") -> str:
    """`field: problem; …` of a config that does not validate (never an input value)."""
    parts = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = ".".join(str(p) for p in (prefix, *err["loc"]) if p != "")
        parts.append(f"{loc or '(config)'}: {str(err['msg']).removeprefix('Value error, ')}")
    return "; ".join(parts)[:1000]
