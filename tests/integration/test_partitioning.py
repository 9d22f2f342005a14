"""Producers whose partitioner is not murmur2 (librdkafka's default is CRC32, sarama's FNV-1a) or
that name a partition: two workers in one group, a tenant's calls on partitions that are not its
own. They reach the worker that holds the tenant, once each; nothing is refused for it."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from pipeline.delivery.routing import REROUTED_FROM
from pipeline.devtools.demo import scrape
from pipeline.devtools.devstack import WorkerProcess
from pipeline.devtools.localkafka import free_port
from pipeline.devtools.samples import sample_calls, sample_tenants
from pipeline.streams.tables import tenant_partition
from tests.integration.stack import StackFactory
from tests.integration.support import actual_state, expected_state, same
from tests.waiting import wait_until

pytestmark = pytest.mark.kafka


def owned(port: int, topic: str) -> set[int]:
    """The call topic's partitions the worker on `port` reports a lag for: those it owns."""
    try:
        metrics = scrape(port)
    except OSError:
        return set()
    return {int(m.group(1)) for key in metrics
            if key.startswith("callsync_consumer_lag_records{") and f'topic="{topic}"' in key
            and (m := re.search(r'partition="(\d+)"', key))}


async def test_calls_on_other_partitions_are_moved_to_their_tenants_and_delivered_once(
        make_stack: StackFactory) -> None:
    stack = make_stack(sample_tenants(2))
    await stack.start()
    port = free_port()
    second = WorkerProcess({**stack.env, "CALLSYNC_METRICS_PORT": str(port),
                            "CALLSYNC_DATA_DIR": str(stack.workdir / "data-2")},
                           stack.workdir / "worker-2.log")
    second.start()
    topic = stack.calls_topic
    try:
        def shared() -> tuple[set[int], set[int]] | None:
            first, other = owned(stack.metrics_port, topic), owned(port, topic)
            whole = first | other == set(range(stack.partitions)) and not first & other
            return (first, other) if whole and first and other else None

        split = await wait_until(shared, "the partitions shared by both workers", within=120,
                                 every=0.5, detail=second.log_tail)
        events = sample_calls([t.sample for t in stack.tenants], 120, seed=5)
        acme: list[dict[str, Any]] = [e for e in events if e["tenant_id"] == "acme"]
        home = tenant_partition("acme", stack.partitions)
        # As a producer with another partitioner would: all of the tenant's calls, in order, on
        # one partition, and that one the worker's that does not hold the tenant.
        away = min(next(s for s in split if home not in s))
        producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, acks="all")
        await producer.start()
        try:
            for event in acme:
                await producer.send(stack.calls_topic, json.dumps(event).encode(), key=b"acme",
                                    partition=away)
            await producer.flush()
        finally:
            await producer.stop()
        await stack.publish_calls([e for e in events if e["tenant_id"] != "acme"])

        tenant = next(t for t in stack.tenants if t.config.tenant_id == "acme")
        want = expected_state(acme, tenant)
        await wait_until(lambda: same(actual_state(stack, "acme"), want),
                         "acme's calls delivered", within=180, every=1.0,
                         detail=lambda: stack.worker.log_tail() + "\n" + second.log_tail())
        await stack.wait_done()
        for other in stack.tenants:
            if other.config.tenant_id != "acme":
                assert same(actual_state(stack, other.config.tenant_id),
                            expected_state(events, other)), other.config.tenant_id

        assert await stack.read_topic(stack.settings.topics.invalid) == []
        calls = await stack.read_topic(stack.calls_topic)
        copies = [m for m in calls if REROUTED_FROM in dict(m.headers or ())]
        assert len(copies) >= len(acme) and {m.partition for m in copies} == {home}
        originals = {(m.partition, m.offset) for m in calls if m.partition == away}
        assert len(originals) == len(acme)
        named = {tuple(dict(m.headers)[REROUTED_FROM].decode().rsplit("/", 2)[1:])
                 for m in copies}
        assert named == {(str(p), str(o)) for p, o in originals}
        assert {json.loads(m.value)["call_id"] for m in copies} == {e["call_id"] for e in acme}
        moved = sum(scrape(p).get("callsync_events_rerouted_total", 0)
                    for p in (port, stack.metrics_port))
        assert moved == len(copies)
    finally:
        second.stop()
