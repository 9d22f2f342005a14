"""Benchmark sections: CRM requests per call by kind, and throughput against a baseline loop."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from resource import RUSAGE_CHILDREN, RUSAGE_SELF, getrusage
from typing import Any

from pipeline.devtools.bench_double import UNTHROTTLED, BenchDouble, counts_for
from pipeline.devtools.bench_figures import (
    FLOORS,
    GOALS,
    KINDS,
    classify,
    fewest_uploads,
    figure_row,
    mix_floor,
)
from pipeline.devtools.bench_stack import Section, Stack, bench_tenant, cpu_seconds
from pipeline.devtools.devstack import enable_telephony, seed_tenant
from pipeline.devtools.samples import SampleTenant, sample_calls, sample_tenants

__all__ = ["ended_call", "requests_section", "throughput_section"]


def ended_call(tenant: SampleTenant, call_id: str, phone: str, *, answered: bool,
               outgoing: bool = False, ago: timedelta = timedelta(hours=1)) -> dict[str, Any]:
    """An ended call an hour ago (too old for a pop-up): one kind's traffic."""
    employee_id, extension = tenant.employees[0]
    call: dict[str, Any] = {
        "call_id": call_id, "tenant_id": tenant.tenant_id,
        "started_at": (datetime.now(UTC) - ago).isoformat(),
        "direction": "out" if outgoing else "in", "client_phone": phone,
        "tracking_number": tenant.tracking_numbers[0],
        "employee": {"id": employee_id, "extension": extension},
        "status": "answered" if answered else "no_answer",
        "talk_seconds": 60 if answered else 0, "wait_seconds": 8, "utm": {}}
    if answered:
        call["recording_url"] = f"https://records.example.com/{call_id}.mp3"
    return call


def _per_kind_traffic(kinds: dict[str, SampleTenant], per_kind: int
                      ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The first calls (new callers, outgoing, and the first calls of the callers who call
    again) and the second calls (known callers)."""
    first: list[dict[str, Any]] = []
    second: list[dict[str, Any]] = []
    for kind, tenant in kinds.items():
        for n in range(per_kind):
            phone = f"+38067{1_000_000 + n}"
            cid = f"{tenant.tenant_id}-{n:05d}"
            if kind.startswith("known_"):
                first.append(ended_call(tenant, cid + "-a", phone, answered=True,
                                        ago=timedelta(hours=2)))
                second.append(ended_call(tenant, cid + "-b", phone,
                                         answered=kind == "known_answered"))
            else:
                first.append(ended_call(tenant, cid, phone, answered=kind != "new_missed",
                                        outgoing=kind == "outgoing"))
    return first, second


def requests_section(stack: Stack, *, calls: int, per_kind: int) -> dict[str, Any]:
    """The bench's mix (the samples' 3 tenants, seed 99) and a portal per call kind."""
    section = Section(stack, "requests", stack.open)
    mix = section.seed(sample_tenants(3))
    kinds = {k: bench_tenant(f"kind-{k.replace('_', '-')}") for k in KINDS}
    section.seed(list(kinds.values()))
    section.publish_tenants(section.tenants)
    events = sample_calls([d.sample for d in mix], calls, seed=99)
    first, second = _per_kind_traffic(kinds, per_kind)
    mix_portals = [d.sample.tenant_id for d in mix]
    rows: list[dict[str, Any]] = []
    result: dict[str, Any] = {"mix_calls": calls, "calls_per_kind": per_kind}
    try:
        section.start()
        section.publish_calls(events + first)
        section.settle()
        warm = {k: sum(counts_for(stack.open, [t.tenant_id]).values())
                for k, t in kinds.items()}
        section.publish_calls(second)
        section.settle()
    finally:
        section.stop()
    counts = classify(events)
    floor = mix_floor(counts)
    used = counts_for(stack.open, mix_portals)
    per_call = sum(used.values()) / calls
    uploads = used.get("/api/telephony/calls/upload", 0)
    result["mix"] = {"kinds": dict(counts), "floor": floor, "requests": used,
                     "requests_per_call": per_call,
                     "calls_per_upload": calls / uploads if uploads else None}
    rows.append(figure_row("requests/call, mix", per_call, GOALS["requests_per_call_mix"][0],
                           note=f"floor {floor:.2f} from its kinds; ratio to floor "
                                f"{per_call / floor:.2f}"))
    result["kinds"] = {}
    for kind, tenant in kinds.items():
        used = counts_for(stack.open, [tenant.tenant_id])
        spent = sum(used.values()) - (warm[kind] if kind.startswith("known_") else 0)
        measured = spent / per_kind
        result["kinds"][kind] = {"requests_per_call": measured, "floor": FLOORS[kind].total,
                                 "requests": used}
        goal = GOALS["requests_per_call_known_answered"][0] if kind == "known_answered" \
            else FLOORS[kind].total
        rows.append(figure_row(f"requests/call, {kind.replace('_', ' ')}", measured, goal,
                               note="goal" if kind == "known_answered" else "floor"))
    fewest = fewest_uploads(events)
    rows.append(figure_row("calls per calls/upload, mix", result["mix"]["calls_per_upload"]
                           or float("nan"), calls / fewest, "min",
                           note=f"up to 50 a portal: {fewest} uploads at fewest for the mix's "
                                f"{len(mix)} tenants"))
    result["rows"] = rows
    return result


def _cpu(who: int) -> float:
    usage = getrusage(who)
    return usage.ru_utime + usage.ru_stime


def _baseline(stack: Stack, section: Section, expected: int) -> dict[str, Any]:
    """The baseline loop in a process of its own against a fresh unthrottled double."""
    double = BenchDouble(general_rps=UNTHROTTLED, telephony_rps=UNTHROTTLED)
    double.start_in_thread()
    try:
        devs = [seed_tenant(double.state, double.url, d.sample, n)
                for n, d in enumerate(section.tenants)]
        for dev in devs:
            asyncio.run(enable_telephony(dev))
        job = {"bootstrap": stack.bootstrap, "topic": section.calls_topic,
               "group": f"{section.app_id}-baseline", "expected": expected,
               "portals": {d.sample.tenant_id: {
                   "url": str(d.config.portal_url), "key": d.config.api_key.get_secret_value(),
                   "manager": d.senior_manager_id} for d in devs}}
        started, own, children = time.monotonic(), _cpu(RUSAGE_SELF), _cpu(RUSAGE_CHILDREN)
        proc = subprocess.run([sys.executable, "-m", "pipeline.devtools.bench_baseline"],
                              input=json.dumps(job).encode(), capture_output=True,
                              timeout=1800, check=False)
        if proc.returncode != 0:
            raise RuntimeError("the baseline loop failed:\n" + proc.stderr.decode()[-3000:])
        out: dict[str, Any] = json.loads(proc.stdout)
        out["wall_seconds"] = time.monotonic() - started
        # This process is the doubles' (its main thread waits): their CPU, and the loop's.
        out["double_cores"] = (_cpu(RUSAGE_SELF) - own) / out["wall_seconds"]
        out["loop_cores"] = (_cpu(RUSAGE_CHILDREN) - children) / out["wall_seconds"]
        out["span_seconds"] = double.span([d.sample.tenant_id for d in devs])
        return out
    finally:
        double.stop_thread()


def throughput_section(stack: Stack, *, calls: int, tenants: int) -> dict[str, Any]:
    """The samples' mix over `tenants` tenants, the double unthrottled: the worker's events/s
    (first to last call request at the double) against the baseline loop's on the same
    records. The worker's client still paces each key (10/s general, 40/s telephony)."""
    section = Section(stack, "throughput", stack.open)
    section.seed([bench_tenant(f"tp-{n}") for n in range(tenants)])
    section.publish_tenants(section.tenants)
    events = sample_calls([d.sample for d in section.tenants], calls, seed=7)
    try:
        section.start()
        cpu_before, own = cpu_seconds(section.pid), _cpu(RUSAGE_SELF)
        started = time.monotonic()
        section.publish_calls(events)
        section.settle()
        end_to_end = time.monotonic() - started
        cpu = cpu_seconds(section.pid) - cpu_before
        double_cores = (_cpu(RUSAGE_SELF) - own) / end_to_end
    finally:
        section.stop()
    portals = section.portals()
    span = stack.open.span(portals)
    used = counts_for(stack.open, portals)
    general = sum(n for m, n in used.items() if not m.startswith("/api/telephony/"))
    baseline = _baseline(stack, section, calls)
    pipeline_rate = calls / span
    baseline_rate = calls / baseline["span_seconds"]
    # The client's pacing alone allows this many calls/s at this many general requests a call.
    paced = tenants * 10 / (general / calls) if general else float("nan")
    rows = [
        figure_row("events/s, pipeline (double unthrottled)", pipeline_rate,
                   GOALS["events_per_second"][0], "min",
                   note=f"{tenants} tenants; client pacing allows {paced:.0f}/s"),
        figure_row("events/s, pipeline ÷ baseline loop", pipeline_rate / baseline_rate,
                   GOALS["throughput_vs_baseline"][0], "min",
                   note=f"baseline {baseline_rate:.0f}/s; cores: loop "
                        f"{baseline['loop_cores']:.2f}, its double {baseline['double_cores']:.2f}"),
        figure_row("worker CPU ms per call", 1000 * cpu / calls,
                   note=f"cores: worker {cpu / end_to_end:.2f}, double {double_cores:.2f} "
                        "(publish to commit)"),
    ]
    return {"calls": calls, "tenants": tenants, "span_seconds": span,
            "end_to_end_seconds": end_to_end, "events_per_second": pipeline_rate,
            "worker_cpu_seconds": cpu, "double_cores": double_cores, "requests": used,
            "requests_per_call": sum(used.values()) / calls, "pacing_bound_per_second": paced,
            "baseline": baseline | {"events_per_second": baseline_rate,
                                    "requests_per_call": baseline["requests"] / calls},
            "rows": rows}
