"""The operator commands of `python -m pipeline`: signed commands on the control topic."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.config import Settings

__all__ = ["add_operator_parsers"]


def _json_object(flag: str, text: str | None) -> dict[str, object] | None:
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise SystemExit(f"{flag} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise SystemExit(f"{flag} must be a JSON object")
    return value


def _options_patch(text: str | None) -> dict[str, object] | None:
    """--options: a JSON merge patch on the tenant's options, checked here on the defaults (the
    worker applies it to the tenant's current ones)."""
    from pydantic import ValidationError

    from pipeline.delivery.intake import describe_invalid
    from schemas.integration import IntegrationOptions

    patch = _json_object("--options", text)
    if patch is not None:
        try:
            IntegrationOptions().patched(patch)
        except ValidationError as exc:
            raise SystemExit(f"--options does not give valid options: "
                             f"{describe_invalid(exc).removeprefix('schema: ')}") from None
    return patch


def _refuse_unknown(settings: Settings, tenant_id: str) -> int | None:
    """Exit status 1 with the reason for a tenant that has no integration, else None."""
    from pipeline.operations.operator import unknown_tenant

    why = unknown_tenant(settings, tenant_id)
    if why is None:
        return None
    print(why, file=sys.stderr)
    return 1


def _tenants(args: argparse.Namespace) -> int:
    from pipeline.config import load_settings
    from pipeline.operations.operator import list_tenants

    return list_tenants(load_settings())


def _operator(args: argparse.Namespace) -> int:
    from pipeline.config import load_settings
    from pipeline.operations.operator import build_command, rekey_all, run, seal_api_key

    settings = load_settings()
    fields: dict[str, object] = {}
    if args.command == "rekey" and args.all:
        return rekey_all(settings, follow=args.follow)
    if args.command != "activate" and (refused := _refuse_unknown(settings, args.tenant)):
        return refused
    if args.command == "activate":
        api_key = os.environ.get(args.api_key_env)
        if not api_key:
            raise SystemExit(f"put the tenant's retailCRM API key in ${args.api_key_env} "
                             "(never on the command line, where shells keep it)")
        fields = {"portal_url": args.portal_url, "admin_email": args.admin_email,
                  "site_code": args.site, "timezone": args.timezone,
                  "api_key": seal_api_key(settings, args.tenant, api_key),
                  "module_code": args.module_code,
                  "options_patch": _options_patch(args.options),
                  "send_after_reactivation": args.send_after_reactivation,
                  "senior_manager_id": args.senior_manager}
    elif args.command == "deactivate":
        fields = {"reason": args.reason}
    elif args.command == "replay":
        fields = {"since": args.since, "until": args.until}
    elif args.command == "employees":
        return _employees(args, settings)
    command = build_command(args.command, args.tenant, operator=os.environ.get("USER", "cli"),
                            **fields)
    return run(settings, command, follow=args.follow)


def _employees(args: argparse.Namespace, settings: object) -> int:
    from pipeline.config import Settings
    from pipeline.operations.operator import build_command, print_employees, run

    assert isinstance(settings, Settings)  # noqa: S101 - narrows for mypy
    kinds = {"list": "employees", "link": "link", "unlink": "unlink", "senior": "senior"}
    fields: dict[str, object] = {}
    if args.action == "link":
        fields = {"employee_id": args.employee, "extension": args.extension,
                  "crm_user_id": args.user}
    elif args.action == "unlink":
        fields = {"employee_id": args.employee}
    elif args.action == "senior":
        fields = {"crm_user_id": args.user}
    command = build_command(kinds[args.action], args.tenant,
                            operator=os.environ.get("USER", "cli"), **fields)
    return run(settings, command, follow=args.follow, show=print_employees)


def add_operator_parsers(sub: Any) -> None:
    """Register the operator commands on `python -m pipeline`'s subcommands."""
    p = sub.add_parser("activate", help="check a tenant's key and (re-)activate it")
    p.add_argument("--tenant", required=True)
    p.add_argument("--portal-url", required=True)
    p.add_argument("--admin-email", required=True)
    p.add_argument("--site", required=True, help="the shop (site) code")
    p.add_argument("--timezone", help="IANA zone; default: the tenant's current one; at a "
                   "first set-up the account's own where the key may read /api/settings, "
                   "else Europe/Moscow")
    p.add_argument("--module-code", help="telephony module code, starting with ringostat "
                   "(its integrationCode); default: the tenant's current one, else ringostat")
    p.add_argument("--options", help="changes to the tenant's options (IntegrationOptions) as "
                   "a JSON merge patch, e.g. '{\"status_sync\": true}': the fields it names "
                   "change, the others stay as the tenant has them; null puts one back to its "
                   "default")
    p.add_argument("--api-key-env", default="CALLSYNC_TENANT_API_KEY",
                   help="variable that holds the key")
    p.add_argument("--send-after-reactivation", action="store_true",
                   help="replay today and the two days before (tenant time zone)")
    p.add_argument("--senior-manager", type=int, metavar="USER",
                   help="CRM user id of the senior manager, for a tenant that has none yet "
                   "(first-time set-up)")
    p.add_argument("--follow", type=float, default=600)
    p.set_defaults(run=_operator)

    p = sub.add_parser("rekey", help="re-encrypt tenants' stored API keys under the current "
                       "key of CALLSYNC_SECRETS__KEYS (after a rotation)")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--tenant")
    group.add_argument("--all", action="store_true",
                       help="every tenant found on the integrations topic and table")
    p.add_argument("--follow", type=float, default=60)
    p.set_defaults(run=_operator)

    p = sub.add_parser("deactivate", help="switch a tenant off; its events are parked")
    p.add_argument("--tenant", required=True)
    p.add_argument("--reason", default="")
    p.add_argument("--follow", type=float, default=60)
    p.set_defaults(run=_operator)

    p = sub.add_parser("replay", help="replay a tenant's calls of a window")
    p.add_argument("--tenant", required=True)
    p.add_argument("--since", help="ISO time with offset; default 00:00 two days ago")
    p.add_argument("--until", help="ISO time with offset; default now")
    p.add_argument("--follow", type=float, default=3600)
    p.set_defaults(run=_operator)

    p = sub.add_parser("tenants", help="the tenants that have an integration")
    p.add_argument("action", choices=["list"])
    p.set_defaults(run=_tenants)

    p = sub.add_parser("status", help="a tenant's state, backlog and replay")
    p.add_argument("--tenant", required=True)
    p.add_argument("--follow", type=float, default=30)
    p.set_defaults(run=_operator)

    p = sub.add_parser("employees", help="list, link, unlink employees; choose the senior")
    p.add_argument("action", choices=["list", "link", "unlink", "senior"])
    p.add_argument("--tenant", required=True)
    p.add_argument("--employee", help="telephony employee id (link, unlink)")
    p.add_argument("--extension", help="the employee's extension (link)")
    p.add_argument("--user", type=int, help="CRM user id (link, senior)")
    p.add_argument("--follow", type=float, default=60)
    p.set_defaults(run=_operator, command="employees")
