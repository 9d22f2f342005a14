"""A real worker process, the real broker and the double: call events in, CRM state out."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections import Counter
from typing import Any

import pytest

from pipeline.devtools.crmdouble.state import Fault
from pipeline.devtools.demo import scrape
from pipeline.devtools.samples import sample_calls, sample_tenants
from pipeline.streams.producing import Record
from pipeline.streams.tables import tenant_partition
from tests.integration.stack import StackFactory
from tests.integration.support import actual_state, expected_state, same
from tests.waiting import wait_until

pytestmark = pytest.mark.kafka


def get_json(port: int, path: str) -> tuple[int, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
        return int(r.status), json.loads(r.read())


def metric(metrics: dict[str, float], name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    total = 0.0
    for key, value in metrics.items():
        base, _, rest = key.partition("{")
        if base == name and all(f'{k}="{v}"' in rest for k, v in labels.items()):
            total += value
    return total


def bad_records(acme: dict[str, Any]) -> list[Record]:
    """Five kinds of bad input, in between the good records."""
    return [
        (b"acme", b"\xff\xfe{not json", None),
        (b"acme", json.dumps({"call_id": "x1", "tenant_id": "acme"}).encode(), None),
        (b"acme", json.dumps({**acme, "call_id": "x2", "client_phone": "12"}).encode(), None),
        (b"ghost", json.dumps({**acme, "call_id": "x3", "tenant_id": "ghost"}).encode(), None),
        (b"globex", json.dumps({**acme, "call_id": "x4"}).encode(), None),
    ]


async def test_a_mixed_batch_lands_exactly_and_feeding_it_again_changes_nothing(
        make_stack: StackFactory) -> None:
    stack = make_stack(sample_tenants(3))
    await stack.start()
    events = sample_calls([t.sample for t in stack.tenants], 520, seed=11)
    acme = next(e for e in events if e["tenant_id"] == "acme")
    good_before, good_after = events[:260], events[260:]
    bad = bad_records(acme)
    await stack.publish_calls(good_before, extra=bad[:3])
    await stack.publish_calls(good_after, extra=bad[3:])
    await stack.wait_done()

    for tenant in stack.tenants:
        want = expected_state(events, tenant)
        got = actual_state(stack, tenant.config.tenant_id)
        assert same(got, want), tenant.config.tenant_id
    counts = Counter(e["tenant_id"] for e in events)
    assert min(counts.values()) > 100 and sum(counts.values()) == 520
    # Pacing to the limits is test_client_pacing's claim, strictly: not one 503. Here the
    # double shares two cores with two other test processes, their brokers and workers, and a
    # stamp of it late by more than the client's 30 ms guard counts eleven requests in a second
    # that left 1.03 s apart (seen once in 4 whole-suite runs: 1 of 600 requests). A 503 is
    # retried like any (the state above is exact); one in a hundred would be pacing, not that.
    stats = stack.double.state.stats()
    limited = sum(s["by_status"].get("503", 0) for s in stats.values())
    assert limited <= sum(s["requests"] for s in stats.values()) // 100, stats

    invalid = await stack.read_topic(stack.settings.topics.invalid)
    reasons = {dict(m.headers)["callsync-reason"].decode().split(":")[0]: m for m in invalid}
    assert len(invalid) == 5
    assert set(reasons) == {"undecodable", "schema", "unknown_tenant", "key_mismatch"}
    assert reasons["undecodable"].value == b"\xff\xfe{not json"  # the original bytes
    assert b"client_phone" in b"".join(dict(m.headers)["callsync-reason"] for m in invalid)

    metrics = scrape(stack.metrics_port)
    assert metrics["callsync_events_delivered_total"] == 520
    assert metric(metrics, "callsync_events_consumed_total", topic=stack.calls_topic) == 525
    assert {reason: metric(metrics, "callsync_events_invalid_total", reason=reason)
            for reason in ("undecodable", "schema", "unknown_tenant", "key_mismatch")} == {
        "undecodable": 1, "schema": 2, "unknown_tenant": 1, "key_mismatch": 1}
    assert metric(metrics, "callsync_call_upload_batch_size_sum") == 520
    assert metric(metrics, "callsync_call_upload_batch_size_count") < 520 / 2
    assert metric(metrics, "callsync_crm_requests_total", outcome="success") == sum(
        s["by_status"].get("200", 0) + s["by_status"].get("201", 0) for s in stats.values()
    ) - len(stack.tenants), "every CRM answer counted (the module edits came from the test)"
    assert metric(metrics, "callsync_worker_ready") == 1
    for path, expected in (("/healthz", {"status": "alive"}), ("/readyz", None)):
        status, body = await asyncio.to_thread(get_json, stack.metrics_port, path)
        assert status == 200 and (expected is None or body == expected)
    def lag_scraped() -> dict[str, float] | None:  # the lag timer runs every 5 s
        found = scrape(stack.metrics_port)
        return found if metric(found, "callsync_consumer_lag_records") == 0 and any(
            k.startswith("callsync_consumer_lag_records{") for k in found) else None

    lag = await wait_until(lag_scraped, "a lag of 0 records on the metrics port", within=20,
                           every=0.5)
    assert metric(lag, "callsync_consumer_lag_records") == 0
    assert metric(lag, "callsync_consumer_lag_seconds") == 0
    requests_first = sum(v for k, v in metrics.items()
                         if k.startswith("callsync_crm_requests_total{"))
    snapshot = {t.config.tenant_id: actual_state(stack, t.config.tenant_id)
                for t in stack.tenants}

    await stack.publish_calls(events, extra=bad)  # the same input, again
    await stack.wait_done()
    for tenant in stack.tenants:
        assert same(actual_state(stack, tenant.config.tenant_id),
                    snapshot[tenant.config.tenant_id])
    assert len(await stack.read_topic(stack.settings.topics.invalid)) == 10
    again = scrape(stack.metrics_port)
    assert sum(v for k, v in again.items()
               if k.startswith("callsync_crm_requests_total{")) == requests_first


async def test_a_slow_portal_does_not_delay_the_other_tenants(make_stack: StackFactory) -> None:
    samples = sample_tenants(3)
    slow, fast = samples[0], samples[2]
    stack = make_stack([slow, fast], partitions=1)
    assert tenant_partition(slow.tenant_id, stack.partitions) == \
        tenant_partition(fast.tenant_id, stack.partitions), "meant to share a partition"
    await stack.start()
    stack.double.state.faults.append(Fault(portal=slow.tenant_id, latency=0.4))
    events = sample_calls([slow], 40, seed=3) + sample_calls([fast], 60, seed=4)
    events.sort(key=lambda e: e["started_at"])  # interleaved on the shared partition
    await stack.publish_calls(events)
    fast_total = sum(1 for e in events if e["tenant_id"] == fast.tenant_id)
    fast_portal = stack.double.state.portals[fast.tenant_id]
    slow_portal = stack.double.state.portals[slow.tenant_id]
    await wait_until(lambda: len(fast_portal.calls) == fast_total,
                     "the fast tenant's calls, all of them", within=60, every=0.1,
                     detail=lambda: f"{len(fast_portal.calls)} of {fast_total}")
    slow_done_then = len(slow_portal.calls)
    assert slow_done_then < 40, "the slow tenant finished first: the test proves nothing"
    stack.double.state.faults.clear()
    await stack.wait_done()
    assert len(slow_portal.calls) == 40
