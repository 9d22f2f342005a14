"""The dev commands of `python -m pipeline`: the double, a local broker, demo, bench, chaos."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from pathlib import Path
from typing import Any

__all__ = ["add_dev_parsers"]


def _crm_double(args: argparse.Namespace) -> int:
    from pipeline.devtools.crmdouble.admin import PortalSpec, seed_portal
    from pipeline.devtools.crmdouble.server import CRMDouble

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
    from pipeline.devtools.localkafka import LocalKafka

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


def _demo(args: argparse.Namespace) -> int:
    from pipeline.devtools.demo import run_demo

    return run_demo(calls=args.calls, tenants=args.tenants, console_port=args.console)


def _bench(args: argparse.Namespace) -> int:
    from pipeline.devtools.bench import BenchSizes, run_bench

    rates = tuple(float(r) for r in args.popup_rates.split(","))
    sizes = BenchSizes(calls=args.calls, per_kind=args.per_kind,
                       throughput_calls=args.throughput_calls,
                       throughput_tenants=args.throughput_tenants, popup_rates=rates,
                       popup_tenants=args.popup_tenants, popup_seconds=args.popup_seconds,
                       tenants=args.tenants, employees=args.employees, called=args.called,
                       replay_tenants=args.replay_tenants, replay_calls=args.replay_calls,
                       general_rps=args.double_general_rps,
                       telephony_rps=args.double_telephony_rps)
    only = args.only.split(",") if args.only else None
    return run_bench(only=only, sizes=sizes, out=args.out)


def _chaos(args: argparse.Namespace) -> int:
    from pipeline.devtools.chaos.runner import run_chaos

    return run_chaos(args.scenarios, events=args.events, tenants=args.tenants, seed=args.seed,
                     as_json=args.json, short=args.short, keep=args.keep)


def add_dev_parsers(sub: Any) -> None:
    """Register the dev commands (pipeline.__main__.DEV_COMMANDS, a test holds them in step)."""
    p = sub.add_parser("demo", help="broker + retailCRM double + worker; show what landed")
    p.add_argument("--calls", type=int, default=120)
    p.add_argument("--tenants", type=int, default=3)
    p.add_argument("--console", type=int, nargs="?", const=8780, metavar="PORT",
                   help="then keep the stack up and serve the operator console on it "
                   "(default port 8780) until Ctrl-C")
    p.set_defaults(run=_demo)

    p = sub.add_parser("bench", help="issue 12's figures: requests per call by kind, "
                       "throughput vs a baseline loop, pop-up latency, memory, replay")
    p.add_argument("--only", help="comma-separated: requests,throughput,popups,memory,replay")
    p.add_argument("--calls", type=int, default=600, help="requests: calls of the mix")
    p.add_argument("--per-kind", type=int, default=50, help="requests: calls per call kind")
    p.add_argument("--throughput-calls", type=int, default=1500)
    p.add_argument("--throughput-tenants", type=int, default=10)
    p.add_argument("--popup-rates", default="100,500", help="pop-ups/s, one run each")
    p.add_argument("--popup-tenants", type=int, default=50)
    p.add_argument("--popup-seconds", type=float, default=5.0, help="per rate")
    p.add_argument("--tenants", type=int, default=300, help="memory: tenants loaded")
    p.add_argument("--employees", type=int, default=50, help="memory: per tenant (<= 50)")
    p.add_argument("--called", type=int, default=30, help="memory: tenants that get calls")
    p.add_argument("--replay-tenants", type=int, default=2)
    p.add_argument("--replay-calls", type=int, default=300, help="per replayed tenant")
    p.add_argument("--double-general-rps", type=int, default=10,
                   help="benchmark only, not for production: the limited double's limits")
    p.add_argument("--double-telephony-rps", type=int, default=40)
    p.add_argument("--out", help="also write the results (JSON) here")
    p.set_defaults(run=_bench)

    p = sub.add_parser("chaos", help="the fault suite: kills, rebalances, broker and portal "
                       "outages, revoked keys, hostile records and portals; CRM vs golden")
    p.add_argument("scenarios", nargs="*", metavar="SCENARIO",
                   help="kill, rebalance, broker, portal-outage, revoke-replay, late-task, "
                   "hostile-records, hostile-portal (default: all)")
    p.add_argument("--events", type=int, default=3000, help="call events per scenario")
    p.add_argument("--tenants", type=int, default=10)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--json", action="store_true", help="the reports as JSON")
    p.add_argument("--short", action="store_true",
                   help="the tests' fault windows and timeouts (use with fewer --events)")
    p.add_argument("--keep", action="store_true", help="keep the work dir (logs) on success")
    p.set_defaults(run=_chaos)

    p = sub.add_parser("crm-double", help="run the retailCRM double on 127.0.0.1")
    p.add_argument("--port", type=int, default=8089)
    p.add_argument("--seed", action="append", help="JSON file with a list of portal specs")
    p.set_defaults(run=_crm_double)

    p = sub.add_parser("kafka-broker", help="fetch and run a real Kafka broker on 127.0.0.1")
    p.add_argument("--port", type=int, default=9092)
    p.add_argument("--data-dir", help="keep the broker's data here (default: a temp dir)")
    p.set_defaults(run=_kafka_broker)
