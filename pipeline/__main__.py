"""`python -m pipeline`: the worker, the operator commands and, from a checkout, the dev tools."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

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


def open_files_limit() -> int:
    """Raise this process's limit of open files to what the system allows it: a worker keeps
    connections to the portals in use, to the broker and to its clients, and a shell's soft
    limit is often 1,024. The limit now."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (OSError, ValueError):  # a container may refuse: run with what there is
            return soft
        return wanted
    return soft


def use_event_loop(name: str) -> None:
    """Every loop this process makes from now on is `name`'s: uvloop (libuv; Faust supports it)
    or the standard library's. The worker says which it runs on once ready (housekeeping)."""
    if name == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def _worker(args: argparse.Namespace) -> int:
    from pipeline.config import load_settings, require_worker_secrets

    settings = load_settings()
    require_worker_secrets(settings)  # before anything starts: a clear refusal
    open_files_limit()
    use_event_loop(settings.event_loop)  # before anything makes a loop

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
    from pipeline.streams.producing import publish, record_for_call

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

    from pipeline.operations.cli import add_operator_parsers

    add_operator_parsers(sub)

    from pipeline.ingest.cli import add_ingest_parsers

    add_ingest_parsers(sub)

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
