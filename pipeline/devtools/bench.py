"""The benchmark: issue 12's figures from one run, each with its ratio to the goal.

Sections (`--only`): requests (per call, by call kind, against the floor), throughput (events/s
with the double unthrottled, against a baseline loop), popups (latency at given rates),
memory (RSS with many tenants loaded, after calls; a restart), replay (three days of calls
against the limits). One Kafka broker and one pair of doubles serve all; each section runs a
worker of its own. Not for production: the doubles' limits are the benchmark's to set.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.devtools.bench_figures import render_table
from pipeline.devtools.bench_stack import Stack
from pipeline.devtools.brokers import kafka_broker

__all__ = ["SECTIONS", "BenchSizes", "run_bench"]

SECTIONS = ("requests", "throughput", "popups", "memory", "replay")


@dataclass(frozen=True)
class BenchSizes:
    calls: int = 600  # the requests section's mix (the samples' 3 tenants)
    per_kind: int = 50  # calls per call kind, a portal each
    throughput_calls: int = 1500
    throughput_tenants: int = 10
    popup_rates: tuple[float, ...] = (100.0, 500.0)
    popup_tenants: int = 50
    popup_seconds: float = 5.0
    tenants: int = 300  # memory: tenants loaded
    employees: int = 50
    called: int = 30  # memory: tenants that get calls
    replay_tenants: int = 2
    replay_calls: int = 300  # per tenant
    general_rps: int = 10  # the limited double's (retailCRM's) limits
    telephony_rps: int = 40


def _sections(sizes: BenchSizes) -> dict[str, Callable[[Stack], dict[str, Any]]]:
    from pipeline.devtools.bench_load import requests_section, throughput_section
    from pipeline.devtools.bench_memory import memory_section
    from pipeline.devtools.bench_popups import popups_section
    from pipeline.devtools.bench_replay import replay_section

    return {
        "requests": lambda s: requests_section(s, calls=sizes.calls, per_kind=sizes.per_kind),
        "throughput": lambda s: throughput_section(s, calls=sizes.throughput_calls,
                                                   tenants=sizes.throughput_tenants),
        "popups": lambda s: popups_section(s, rates=list(sizes.popup_rates),
                                           tenants=sizes.popup_tenants,
                                           seconds=sizes.popup_seconds),
        "memory": lambda s: memory_section(s, tenants=sizes.tenants, employees=sizes.employees,
                                           called=sizes.called, calls_each=4),
        "replay": lambda s: replay_section(s, tenants=sizes.replay_tenants,
                                           calls_each=sizes.replay_calls),
    }


def _plain(value: Any) -> Any:
    """JSON without NaN or Infinity (which JSON has not): null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def run_bench(*, only: list[str] | None = None, sizes: BenchSizes | None = None,
              out: str | None = None) -> int:
    sizes = sizes or BenchSizes()
    chosen = only or list(SECTIONS)
    unknown = sorted(set(chosen) - set(SECTIONS))
    if unknown:
        raise SystemExit(f"unknown sections {', '.join(unknown)}; there are "
                         f"{', '.join(SECTIONS)}")
    runners = _sections(sizes)
    workdir = Path(tempfile.mkdtemp(prefix="callsync-bench-"))
    results: dict[str, Any] = {"sizes": sizes.__dict__, "workdir": str(workdir),
                               "sections": {}}
    failed = False
    with kafka_broker() as bootstrap:
        stack = Stack(bootstrap=bootstrap, workdir=workdir, general_rps=sizes.general_rps,
                      telephony_rps=sizes.telephony_rps)
        try:
            for name in [s for s in SECTIONS if s in chosen]:
                started = time.monotonic()
                try:
                    section = runners[name](stack)
                except (RuntimeError, TimeoutError, OSError) as exc:
                    failed = True
                    section = {"error": f"{type(exc).__name__}: {exc}"[:4000], "rows": []}
                section["section_seconds"] = time.monotonic() - started
                results["sections"][name] = section
                print(f"[{name}: {section['section_seconds']:.0f} s]", flush=True)
        finally:
            stack.close()
    rows = [r for s in results["sections"].values() for r in s["rows"]]
    text = json.dumps(_plain(results), indent=2)
    if out:
        Path(out).write_text(text + "\n")
    print(render_table(rows))
    for name, section in results["sections"].items():
        if "error" in section:
            print(f"\n{name} failed: {section['error']}")
    if out:
        print(f"\nJSON: {out}")
    return 1 if failed else 0
