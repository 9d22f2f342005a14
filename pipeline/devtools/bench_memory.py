"""Benchmark section: the worker's memory with many tenants loaded, after calls, on restart."""

from __future__ import annotations

import math
import time
from datetime import timedelta
from typing import Any

from pipeline.devtools.bench_figures import GOALS, figure_row
from pipeline.devtools.bench_load import ended_call
from pipeline.devtools.bench_stack import Section, Stack, bench_tenant, proc_status_mib
from pipeline.devtools.demo import metric_total

__all__ = ["memory_section"]

# RSS after calls is read this long after the last one was committed: a housekeeping tick
# (agents/housekeeping.py, every 10 s) returns the free heap the burst left.
AFTER_HOUSEKEEPING = 12.0


def _wait(check: Any, within: float) -> float:
    """Seconds until check() holds, polled every 0.1 s; nan if it never did."""
    started = time.monotonic()
    while time.monotonic() - started < within:
        if check():
            return time.monotonic() - started
        time.sleep(0.1)
    return float("nan")


def memory_section(stack: Stack, *, tenants: int, employees: int, called: int,
                   calls_each: int) -> dict[str, Any]:
    """`tenants` tenants of `employees` employees published; the worker's RSS once it has
    stored them, then after `calls_each` calls for `called` of them; then a restart on the
    same data: seconds to /readyz and to the first call delivered."""
    section = Section(stack, "memory", stack.open)
    section.seed([bench_tenant(f"mem-{n}", employees) for n in range(tenants)])
    section.publish_tenants(section.tenants)
    result: dict[str, Any] = {"tenants": tenants, "employees": employees, "called": called}
    try:
        section.start()
        result["first_start_loaded_seconds"] = time.monotonic() - section.started
        time.sleep(2)  # what loading left behind settles
        result["rss_loaded_mib"] = proc_status_mib(section.pid, "VmRSS")
        calls = [ended_call(d.sample, f"{d.sample.tenant_id}-m{n}", f"+38067{3_000_000 + n}",
                            answered=n % 2 == 0) for d in section.tenants[:called]
                 for n in range(calls_each)]
        section.publish_calls(calls)
        section.settle()
        time.sleep(2)
        result["rss_2s_after_calls_mib"] = proc_status_mib(section.pid, "VmRSS")
        # Once a housekeeping tick (every 10 s) could hand the burst's free heap back.
        time.sleep(AFTER_HOUSEKEEPING - 2)
        result["rss_after_calls_mib"] = proc_status_mib(section.pid, "VmRSS")
        result["hwm_mib"] = proc_status_mib(section.pid, "VmHWM")
        result["heap_returned_mib"] = metric_total(
            section.port, "callsync_heap_returned_bytes_total") / 2**20
        section.stop()
        # A restart: ready, then delivering a call published as it starts.
        first = section.tenants[0].sample
        call = ended_call(first, f"{first.tenant_id}-restart", "+380674000000",
                          answered=True, ago=timedelta(minutes=5))
        section.worker.start()
        started = time.monotonic()
        section.publish_calls([call])
        portal = stack.open.state.portals[first.tenant_id]
        result["restart_ready_seconds"] = _wait(section.ready, 300)
        delivered = _wait(lambda: call["call_id"] in portal.calls, 300)
        result["restart_delivering_seconds"] = \
            float("nan") if math.isnan(delivered) else time.monotonic() - started
    finally:
        section.stop()
    rss_goal = GOALS["rss_mib_loaded"][0]
    size = f"{tenants} tenants x {employees} employees"
    result["rows"] = [
        figure_row("worker RSS MiB, tenants loaded", result["rss_loaded_mib"], rss_goal,
                   note=f"{size}; loaded {result['first_start_loaded_seconds']:.1f} s "
                        "after start"),
        figure_row("worker RSS MiB, after calls", result["rss_after_calls_mib"], rss_goal,
                   note=f"calls for {called}; {AFTER_HOUSEKEEPING:.0f} s after them "
                        f"(2 s: {result['rss_2s_after_calls_mib']:.0f}); peak (VmHWM) "
                        f"{result['hwm_mib']:.0f} MiB; the free-heap trims gave back "
                        f"{result['heap_returned_mib']:.0f} MiB"),
        figure_row("restart: s to first call delivered", result["restart_delivering_seconds"],
                   GOALS["restart_delivering_seconds"][0],
                   note=f"/readyz after {result['restart_ready_seconds']:.1f} s"),
    ]
    return result
