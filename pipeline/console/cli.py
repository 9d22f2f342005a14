"""`python -m pipeline console`: serve the operator console; add, remove and list its users."""

from __future__ import annotations

import argparse
import getpass
import logging.config
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_console_parser"]

DEFAULT_DIR = ".callsync/console"


def _paths(args: argparse.Namespace) -> tuple[Path, Path, Path]:
    base = Path(args.dir)
    return (Path(args.accounts) if getattr(args, "accounts", None) else base / "accounts.json",
            base / "audit.jsonl", base / "session.key")


def _serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from pipeline.config import load_settings
    from pipeline.console.accounts import Accounts
    from pipeline.console.app import Console, make_app
    from pipeline.console.audit import AuditLog
    from pipeline.console.overview import Overview
    from pipeline.console.sessions import SessionCodec, load_or_create_secret
    from pipeline.observability.logs import logging_config, redactor
    from pipeline.signing import record_key

    settings = load_settings()
    logging.config.dictConfig(logging_config(json_lines=settings.log_json))
    if settings.operator_key is None:
        raise SystemExit("CALLSYNC_OPERATOR_KEY is not set: the console signs every command "
                         "with it (the same key the workers have)")
    if settings.secrets.keyring() is None:
        raise SystemExit("CALLSYNC_SECRETS__KEYS is not set: the console encrypts a tenant's "
                         "API key for the workers before it sends it (the workers' KEKs)")
    redactor.register(settings.operator_key.get_secret_value())
    accounts_path, audit_path, secret_path = _paths(args)
    accounts = Accounts(accounts_path)
    if not accounts.names():
        print(f"no console users in {accounts_path}: add one with "
              f"`python -m pipeline console add-user NAME --dir {args.dir}`", file=sys.stderr)
    operator_key = settings.operator_key.get_secret_value().encode()
    console = Console(settings=settings, accounts=accounts, audit=AuditLog(audit_path),
                      overview=Overview(record_key=record_key(operator_key)),
                      sessions=SessionCodec(load_or_create_secret(secret_path),
                                            max_age=int(args.session_hours * 3600)),
                      secure_cookies=args.secure_cookies)
    print(f"callsync console on http://{args.host}:{args.port} (users {accounts_path}, "
          f"audit {audit_path})", flush=True)
    web.run_app(make_app(console), host=args.host, port=args.port, print=None,
                access_log_format='%a "%r" %s %b %Tfs')
    return 0


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass(f"password for {args.name}: ")
    if getpass.getpass("again: ") != first:
        raise SystemExit("the passwords differ")
    return first


def _add_user(args: argparse.Namespace) -> int:
    from pipeline.console.accounts import AccountError, Accounts

    accounts = Accounts(_paths(args)[0])
    try:
        account = accounts.set_password(args.name, _password(args), role=args.role)
    except AccountError as exc:
        raise SystemExit(str(exc)) from None
    print(f"{account.name}: {account.role} in {accounts.path}")
    return 0


def _remove_user(args: argparse.Namespace) -> int:
    from pipeline.console.accounts import Accounts

    if not Accounts(_paths(args)[0]).remove(args.name):
        print(f"no user {args.name}", file=sys.stderr)
        return 1
    print(f"removed {args.name}")
    return 0


def _users(args: argparse.Namespace) -> int:
    from pipeline.console.accounts import Accounts

    for name, role in Accounts(_paths(args)[0]).names():
        print(f"{name}\t{role}")
    return 0


def add_console_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register `console` (serve) with its `add-user`, `remove-user` and `users` actions."""
    from pipeline.console.accounts import ROLES

    parser: argparse.ArgumentParser = subparsers.add_parser(
        "console", help="the operator console (web): tenants, settings, employees, "
        "dead letters, replays, audit")
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("--dir", default=argparse.SUPPRESS,
                       help=f"accounts.json, audit.jsonl and session.key (default {DEFAULT_DIR})")
    where.add_argument("--accounts", default=argparse.SUPPRESS,
                       help="the accounts file (default DIR/accounts.json)")
    parser.add_argument("--dir", default=DEFAULT_DIR,
                        help=f"accounts.json, audit.jsonl and session.key (default {DEFAULT_DIR})")
    parser.add_argument("--accounts", default=None, help="the accounts file")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8780)
    parser.add_argument("--session-hours", type=float, default=8.0)
    parser.add_argument("--secure-cookies", action="store_true",
                        help="mark the session cookie Secure (serve it behind TLS)")
    parser.set_defaults(run=_serve)
    actions = parser.add_subparsers(dest="console_action")
    add = actions.add_parser("add-user", parents=[where],
                             help="add a user or change their password and role")
    add.add_argument("name")
    add.add_argument("--role", choices=ROLES, default="operator",
                     help="viewer: read-only, sends no changing command")
    add.add_argument("--password-stdin", action="store_true",
                     help="read the password from the first line of stdin (else prompted)")
    add.set_defaults(run=_add_user)
    remove = actions.add_parser("remove-user", parents=[where], help="remove a user")
    remove.add_argument("name")
    remove.set_defaults(run=_remove_user)
    users = actions.add_parser("users", parents=[where], help="list the users and roles")
    users.set_defaults(run=_users)
    return parser
