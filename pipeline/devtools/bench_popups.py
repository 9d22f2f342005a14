"""Benchmark section: pop-up latency, produce → `telephony/call/event` at the double."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaProducer

from pipeline.devtools.bench_figures import GOALS, figure_row, percentile
from pipeline.devtools.bench_stack import Section, Stack, bench_tenant

__all__ = ["popups_section"]


def _ringing(tenant: str, call_id: str, n: int) -> dict[str, Any]:
    return {"call_id": call_id, "tenant_id": tenant, "stage": "started",
            "started_at": datetime.now(UTC).isoformat(), "direction": "in",
            "client_phone": f"+38067{2_000_000 + n}", "tracking_number": "+380443334499",
            "employee": {"id": f"{tenant}-e1", "extension": "101"}, "status": "in_progress"}


async def _produce_at(bootstrap: str, topic: str, tenants: list[str], rate: float,
                      seconds: float, tag: str) -> dict[str, float]:
    """Ringing calls at `rate`/s, round robin over tenants; each call's send time (wall)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await producer.start()
    sent: dict[str, float] = {}
    try:
        start = time.monotonic()
        for n in range(int(rate * seconds)):
            delay = start + n / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tenant = tenants[n % len(tenants)]
            call_id = f"{tag}-{n:06d}"
            now = time.time()
            sent[call_id] = now
            await producer.send(topic, json.dumps(_ringing(tenant, call_id, n)).encode(),
                                key=tenant.encode(), timestamp_ms=int(now * 1000))
        await producer.flush()
    finally:
        await producer.stop()
    return sent


def _wait_arrivals(stack: Stack, sent: dict[str, float], within: float) -> dict[str, float]:
    deadline = time.monotonic() + within
    arrivals = stack.open.popup_arrivals
    while time.monotonic() < deadline and not all(c in arrivals for c in sent):
        time.sleep(0.2)
    return arrivals


def popups_section(stack: Stack, *, rates: list[float], tenants: int,
                   seconds: float) -> dict[str, Any]:
    """For each rate in turn: that many ringing calls a second for `seconds` across `tenants`
    tenants (the double unthrottled), each pop-up's latency from its send to its arrival."""
    section = Section(stack, "popups", stack.open)
    section.seed([bench_tenant(f"pu-{n}") for n in range(tenants)])
    section.publish_tenants(section.tenants)
    names = section.portals()
    out: dict[str, Any] = {"tenants": tenants, "seconds": seconds, "rates": {}}
    rows = []
    try:
        section.start()
        # One pop-up per tenant first, not measured: lanes and clients are made on first use.
        warm = asyncio.run(_produce_at(stack.bootstrap, section.calls_topic, names,
                                       rate=50, seconds=tenants / 50, tag="warm"))
        _wait_arrivals(stack, warm, within=60)
        for rate in rates:
            tag = f"pu{int(rate)}"
            sent = asyncio.run(_produce_at(stack.bootstrap, section.calls_topic, names, rate,
                                           seconds, tag))
            arrivals = _wait_arrivals(stack, sent, within=30)
            latencies = [1000 * (arrivals[c] - t) for c, t in sent.items() if c in arrivals]
            got = [arrivals[c] for c in sent if c in arrivals]
            delivered_rate = len(got) / (max(got) - min(got)) if len(got) > 1 else float("nan")
            p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
            out["rates"][str(rate)] = {"sent": len(sent), "delivered": len(got),
                                       "delivered_per_second": delivered_rate,
                                       "p50_ms": p50, "p99_ms": p99,
                                       "max_ms": max(latencies, default=float("nan"))}
            goal = GOALS.get(f"popup_p99_ms_{int(rate)}")
            note = (f"{len(got)}/{len(sent)} delivered, {delivered_rate:.0f}/s; "
                    f"{tenants} tenants")
            rows.append(figure_row(f"pop-up p50 ms at {rate:g}/s", p50, note=note))
            rows.append(figure_row(f"pop-up p99 ms at {rate:g}/s", p99,
                                   goal[0] if goal else None))
    finally:
        section.stop()
    out["rows"] = rows
    return out
