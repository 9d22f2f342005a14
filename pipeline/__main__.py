"""`python -m pipeline`: the worker, the operator commands and, from a checkout, the dev tools."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.config import Settings

__all__ = ["DEV_COMMANDS", "main"]

# The commands of pipeline/devtools, which the wheel and the Docker image leave out: an install
# without them lists them and refuses them in one line.
DEV_COMMANDS = ("demo", "bench", "chaos", "crm-double", "kafka-broker")


def _devtools_cli() -> ModuleType | None:
    """pipeline.devtools.cli, or None where this install has no dev tools."""
    try:
        import pipeline.devtools.cli as devtools_cli
    except ModuleNotFoundError as exc:
        if exc.name in ("pipeline.devtools", "pipeline.devtools.cli"):
            return None
        raise  # a dev tool that is there but misses a dependency says which
    return devtools_cli


def _not_installed(command: str) -> str:
    return (f"python -m pipeline {command}: a dev tool, not in this install (the wheel and the "
            "Docker image leave pipeline/devtools out); run it from a checkout: ./deploy/dev")


def _add_dev_parsers(sub: Any) -> None:
    devtools_cli = _devtools_cli()
    if devtools_cli is not None:
        devtools_cli.add_dev_parsers(sub)
        return
    for command in DEV_COMMANDS:  # listed in --help; main() refuses them before parsing
        sub.add_parser(command, help="dev tool, not in this install")


def _schema(args: argparse.Namespace) -> int:
    from schemas.publish import CALL_EVENT_SCHEMA_PATH, call_event_schema_text

    text = call_event_schema_text()
    if args.write:
        CALL_EVENT_SCHEMA_PATH.write_text(text)
        print(f"wrote {CALL_EVENT_SCHEMA_PATH}")
        return 0
    if args.check:
        if CALL_EVENT_SCHEMA_PATH.read_text() != text:
            print(f"{CALL_EVENT_SCHEMA_PATH} is stale: run with --write", file=sys.stderr)
            return 1
        return 0
    sys.stdout.write(text)
    return 0


def _worker(args: argparse.Namespace) -> int:
    from pipeline.config import load_settings, require_worker_secrets

    require_worker_secrets(load_settings())  # before anything starts: a clear refusal

    from pipeline.app import app, settings
    from pipeline.topics import ensure_topics

    created = asyncio.run(ensure_topics(settings))
    if created:
        print(f"created topics: {', '.join(created)}", flush=True)
    sys.argv = ["callsync", "worker", "--loglevel", args.loglevel]
    app.main()
    return 0


def _produce(args: argparse.Namespace) -> int:
    from pipeline.config import load_settings
    from pipeline.producing import publish, record_for_call

    settings = load_settings()
    lines = [line.strip().encode() for line in Path(args.file).read_text().splitlines()
             if line.strip()]
    topic = args.topic or settings.topics.calls
    sent = asyncio.run(publish(settings.kafka.client_options(), topic,
                               (record_for_call(line) for line in lines)))
    print(f"published {sent} records to {topic}")
    return 0


def _create_topics(args: argparse.Namespace) -> int:
    from pipeline.config import load_settings
    from pipeline.topics import ensure_topics

    created = asyncio.run(ensure_topics(load_settings()))
    print(f"created: {', '.join(created) or 'nothing, all there'}")
    return 0


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

    from pipeline.intake import describe_invalid
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
    import os

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
    import os

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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("worker", help="run the Faust worker (settings from CALLSYNC_*)")
    p.add_argument("--loglevel", "-l", default="info",
                   choices=["crit", "error", "warn", "info", "debug"])
    p.set_defaults(run=_worker)

    from pipeline.console.cli import add_console_parser

    add_console_parser(sub)

    p = sub.add_parser("create-topics", help="create callsync's topics, check existing ones")
    p.set_defaults(run=_create_topics)

    p = sub.add_parser("produce", help="publish call events from a JSON-lines file")
    p.add_argument("file")
    p.add_argument("--topic", help="default: the call topic of the settings")
    p.set_defaults(run=_produce)

    p = sub.add_parser("activate", help="check a tenant's key and (re-)activate it")
    p.add_argument("--tenant", required=True)
    p.add_argument("--portal-url", required=True)
    p.add_argument("--admin-email", required=True)
    p.add_argument("--site", required=True, help="the shop (site) code")
    p.add_argument("--timezone", help="IANA zone; default: the tenant's current one, "
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

    p = sub.add_parser("schema", help="print, --write or --check the call event JSON Schema")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--write", action="store_true")
    group.add_argument("--check", action="store_true")
    p.set_defaults(run=_schema)

    _add_dev_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in DEV_COMMANDS and _devtools_cli() is None:
        print(_not_installed(argv[0]), file=sys.stderr)
        return 2
    args = _parser().parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
