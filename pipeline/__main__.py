"""`python -m pipeline`: the worker, the operator commands and the local tooling."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["main"]


def _crm_double(args: argparse.Namespace) -> int:
    from pipeline.crmdouble.admin import PortalSpec, seed_portal
    from pipeline.crmdouble.server import CRMDouble

    double = CRMDouble(port=args.port)
    for seed in args.seed or []:
        for spec in json.loads(Path(seed).read_text()):
            seed_portal(double.state, PortalSpec.model_validate(spec))

    async def run() -> None:
        url = await double.start()
        print(f"retailCRM double on {url} (portals at {url}/<name>, admin at {url}/_admin)",
              flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await double.stop()

    asyncio.run(run())
    return 0


def _kafka_broker(args: argparse.Namespace) -> int:
    from pipeline.localkafka import LocalKafka

    broker = LocalKafka(port=args.port, data_dir=Path(args.data_dir) if args.data_dir else None)
    # Blocked signals wait for sigwait, so the JVM is always stopped by the finally below.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    broker.start()
    print(f"Kafka on {broker.bootstrap_servers} (started in {broker.startup_seconds:.1f}s, "
          f"log {broker.log_file}); Ctrl-C stops it", flush=True)
    try:
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        broker.stop()
    return 0


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
    sent = asyncio.run(publish(settings.kafka.bootstrap_servers, topic,
                               (record_for_call(line) for line in lines)))
    print(f"published {sent} records to {topic}")
    return 0


def _create_topics(args: argparse.Namespace) -> int:
    from pipeline.config import load_settings
    from pipeline.topics import ensure_topics

    created = asyncio.run(ensure_topics(load_settings()))
    print(f"created: {', '.join(created) or 'nothing, all there'}")
    return 0


def _publish_tenant(args: argparse.Namespace) -> int:
    from pipeline.config import load_settings
    from pipeline.producing import publish
    from schemas.integration import IntegrationConfig
    from schemas.mapping import EmployeeMapping

    settings = load_settings()
    raw = Path(args.file).read_bytes()
    model: type[IntegrationConfig] | type[EmployeeMapping] = (
        IntegrationConfig if args.kind == "integration" else EmployeeMapping)
    parsed = model.model_validate_json(raw)  # refuse to publish what the worker would refuse
    topic = settings.topics.integrations if args.kind == "integration" \
        else settings.topics.mappings
    asyncio.run(publish(settings.kafka.bootstrap_servers, topic,
                        [(parsed.tenant_id.encode(), raw, None)]))
    print(f"published the {args.kind} of {parsed.tenant_id} to {topic}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from pipeline.demo import run_demo

    return run_demo(calls=args.calls, tenants=args.tenants)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("worker", help="run the Faust worker (settings from CALLSYNC_*)")
    p.add_argument("--loglevel", "-l", default="info",
                   choices=["crit", "error", "warn", "info", "debug"])
    p.set_defaults(run=_worker)

    p = sub.add_parser("create-topics", help="create callsync's topics, check existing ones")
    p.set_defaults(run=_create_topics)

    p = sub.add_parser("produce", help="publish call events from a JSON-lines file")
    p.add_argument("file")
    p.add_argument("--topic", help="default: the call topic of the settings")
    p.set_defaults(run=_produce)

    p = sub.add_parser("publish-tenant", help="publish a tenant's integration or mapping JSON")
    p.add_argument("kind", choices=["integration", "mapping"])
    p.add_argument("file")
    p.set_defaults(run=_publish_tenant)

    p = sub.add_parser("demo", help="broker + retailCRM double + worker; show what landed")
    p.add_argument("--calls", type=int, default=120)
    p.add_argument("--tenants", type=int, default=3)
    p.set_defaults(run=_demo)

    p = sub.add_parser("crm-double", help="run the retailCRM double on 127.0.0.1")
    p.add_argument("--port", type=int, default=8089)
    p.add_argument("--seed", action="append", help="JSON file with a list of portal specs")
    p.set_defaults(run=_crm_double)

    p = sub.add_parser("kafka-broker", help="fetch and run a real Kafka broker on 127.0.0.1")
    p.add_argument("--port", type=int, default=9092)
    p.add_argument("--data-dir", help="keep the broker's data here (default: a temp dir)")
    p.set_defaults(run=_kafka_broker)

    p = sub.add_parser("schema", help="print, --write or --check the call event JSON Schema")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--write", action="store_true")
    group.add_argument("--check", action="store_true")
    p.set_defaults(run=_schema)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
