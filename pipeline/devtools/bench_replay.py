"""Benchmark section: a three-day replay against what retailCRM's limits allow at best."""

from __future__ import annotations

import asyncio
import io
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from pipeline.devtools.bench_double import counts_for, requests_with_status
from pipeline.devtools.bench_figures import GOALS, classify, figure_row, split_floor
from pipeline.devtools.bench_stack import Section, Stack, bench_tenant
from pipeline.devtools.demo import wait_for_metric
from pipeline.devtools.devstack import settings_from
from pipeline.devtools.samples import sample_calls
from pipeline.operations.operator import build_command, send_and_follow

__all__ = ["replay_section"]

SETUP_WINDOW_SECONDS = 1.1  # retailCRM's window, and a little more


def replay_section(stack: Stack, *, tenants: int, calls_each: int) -> dict[str, Any]:
    """Three days of calls published before their tenants were configured (the worker puts
    them aside as unknown tenants' and delivers nothing), then the tenants configured and a
    replay of the three days asked for each at once, the double limited as retailCRM is.
    Its time against the least the limits allow: per tenant the larger of general requests
    ÷ the general limit and telephony requests ÷ the telephony limit (the two budgets are
    separate), for the floor's requests and for the requests the worker made."""
    section = Section(stack, "replay", stack.limited)
    devs = section.seed([bench_tenant(f"rp-{n}") for n in range(tenants)])
    section.publish_tenants([])  # the topics only
    end = datetime.now(UTC) - timedelta(minutes=10)
    events = sample_calls([d.sample for d in devs], tenants * calls_each, seed=3, end=end,
                          span=timedelta(hours=60))
    settings = settings_from(section.env)
    try:
        section.start(loaded=0)
        section.publish_calls(events)
        section.settle()
        section.publish_tenants(devs)
        set_up = time.monotonic()
        wait_for_metric(section.port, "callsync_tenant_updates_total", 2 * tenants,
                        section.worker)
        since = datetime.now(UTC) - timedelta(days=3)
        # The set-up's own request to each portal (its telephony module, from this process)
        # counts in that key's second like any other: a replay asked for within it would
        # start with nine of its ten left, and the tenth draw a 503 that is not the worker's.
        time.sleep(max(0.0, set_up + SETUP_WINDOW_SECONDS - time.monotonic()))

        async def replay_all() -> list[Any]:
            return await asyncio.gather(*(send_and_follow(settings, build_command(
                "replay", d.sample.tenant_id, operator="bench", since=since.isoformat()),
                follow=3600, out=io.StringIO()) for d in devs))

        started = time.monotonic()
        answers = asyncio.run(replay_all())
        names = section.portals()
        portals = [stack.limited.state.portals[n] for n in names]
        expected = {d.sample.tenant_id: sum(1 for e in events
                                            if e["tenant_id"] == d.sample.tenant_id)
                    for d in devs}
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and any(
                len(p.calls) < expected[p.name] for p in portals):
            time.sleep(0.2)
        seconds = time.monotonic() - started
    finally:
        section.stop()
    limits = (stack.general_rps, stack.telephony_rps)
    floor_bound = made_bound = 0.0
    per_tenant: dict[str, dict[str, Any]] = {}
    for name in names:
        floor = split_floor(classify(e for e in events if e["tenant_id"] == name))
        used = counts_for(stack.limited, [name])
        telephony = sum(n for m, n in used.items() if m.startswith("/api/telephony/"))
        general = sum(used.values()) - telephony
        bounds = (max(floor.general / limits[0], floor.telephony / limits[1]),
                  max(general / limits[0], telephony / limits[1]))
        floor_bound, made_bound = max(floor_bound, bounds[0]), max(made_bound, bounds[1])
        per_tenant[name] = {"calls": expected[name], "delivered": len(
            stack.limited.state.portals[name].calls), "general": general,
            "telephony": telephony, "floor_general": floor.general,
            "floor_telephony": floor.telephony, "floor_bound_seconds": bounds[0],
            "made_bound_seconds": bounds[1], "methods": dict(used)}
    errors = requests_with_status(stack.limited, names, 503)
    delivered = sum(t["delivered"] for t in per_tenant.values())
    note = (f"{tenants} x {calls_each} calls, {seconds:.0f} s, {delivered} delivered; "
            f"floor bound {floor_bound:.0f} s")
    return {"tenants": per_tenant, "seconds": seconds, "floor_bound_seconds": floor_bound,
            "made_bound_seconds": made_bound, "http_503": errors,
            "answers": [a.status if a else None for a in answers], "rows": [
                figure_row("replay time ÷ (floor requests ÷ limits)", seconds / floor_bound,
                           GOALS["replay_vs_floor_bound"][0], note=note),
                figure_row("replay time ÷ (its requests ÷ limits)", seconds / made_bound,
                           note=f"its requests allow {made_bound:.0f} s"),
                figure_row("replay 503s", float(errors), GOALS["replay_503"][0])]}
