"""`python -m pipeline ingest` (serve) and `python -m pipeline ingest-token add|list|revoke`."""

from __future__ import annotations

import argparse
import logging.config
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_ingest_parsers"]


def _serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from pipeline.config import SettingsError, load_settings
    from pipeline.ingest.app import Ingest, make_app
    from pipeline.ingest.publisher import kafka_publisher
    from pipeline.ingest.tokens import TokenError, TokenFile
    from pipeline.observability.logs import logging_config, redactor

    settings = load_settings()
    options = settings.ingest
    tokens = TokenFile(Path(options.tokens_file))
    try:
        count = tokens.load()
    except TokenError as exc:
        raise SettingsError(f"invalid callsync settings:\n  CALLSYNC_INGEST__TOKENS_FILE: "
                            f"{exc} (add a producer: python -m pipeline ingest-token add)"
                            ) from None
    logging.config.dictConfig(logging_config(json_lines=settings.log_json))
    redactor.mask_phones = not settings.log_phone_numbers
    if settings.kafka.sasl_password is not None:
        redactor.register(settings.kafka.sasl_password.get_secret_value())
    publisher = kafka_publisher(settings)
    print(f"callsync ingest on http://{options.host}:{options.port}/v1/calls → "
          f"{settings.topics.calls} ({count} producers in {options.tokens_file})", flush=True)
    web.run_app(make_app(Ingest(settings=options, tokens=tokens, publisher=publisher)),
                host=options.host, port=options.port, print=None,
                access_log_format='%a "%r" %s %b %Tfs')
    return 0


def _tokens(args: argparse.Namespace) -> Any:
    from pipeline.ingest.tokens import TokenFile

    if args.file is None:
        from pipeline.config import load_settings

        args.file = load_settings().ingest.tokens_file
    return TokenFile(Path(args.file))


def _add(args: argparse.Namespace) -> int:
    from pipeline.ingest.tokens import TokenError

    tenants = [t.strip() for t in args.tenants.split(",") if t.strip()]
    try:
        token = _tokens(args).add(args.name, tenants)
    except TokenError as exc:
        raise SystemExit(str(exc)) from None
    print(f"producer {args.name} may publish for {', '.join(sorted(set(tenants)))}; its token "
          f"(shown once, only its hash is kept in {args.file}):", file=sys.stderr)
    print(token, flush=True)
    return 0


def _list(args: argparse.Namespace) -> int:
    from pipeline.ingest.tokens import TokenError

    try:
        producers = _tokens(args).producers()
    except TokenError as exc:
        raise SystemExit(str(exc)) from None
    for producer in producers:
        print(f"{producer.name}\t{','.join(sorted(producer.tenants))}")
    return 0


def _revoke(args: argparse.Namespace) -> int:
    from pipeline.ingest.tokens import TokenError

    try:
        revoked = _tokens(args).revoke(args.name)
    except TokenError as exc:
        raise SystemExit(str(exc)) from None
    if not revoked:
        print(f"no producer {args.name} in {args.file}", file=sys.stderr)
        return 1
    print(f"revoked {args.name} (a running ingest refuses its token from the next request)")
    return 0


def add_ingest_parsers(subparsers: Any) -> None:
    p = subparsers.add_parser("ingest", help="serve POST /v1/calls for producers that cannot "
                              "speak Kafka (settings from CALLSYNC_INGEST__*)")
    p.set_defaults(run=_serve)

    p = subparsers.add_parser("ingest-token", help="add, list or revoke the HTTP ingest's "
                              "producer tokens")
    actions = p.add_subparsers(dest="token_action", required=True)
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("--file", default=None,
                       help="the tokens file (default: CALLSYNC_INGEST__TOKENS_FILE)")
    add = actions.add_parser("add", parents=[where],
                             help="a new token; printed once, only its hash is stored")
    add.add_argument("--name", required=True, help="the producer (1-64 of A-Za-z0-9._@-)")
    add.add_argument("--tenants", required=True, help="tenant ids it may publish for: a,b")
    add.set_defaults(run=_add)
    listing = actions.add_parser("list", parents=[where], help="producers and their tenants")
    listing.set_defaults(run=_list)
    revoke = actions.add_parser("revoke", parents=[where], help="remove a producer's token")
    revoke.add_argument("--name", required=True)
    revoke.set_defaults(run=_revoke)
