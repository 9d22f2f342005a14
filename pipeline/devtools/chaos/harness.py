"""One chaos run: the double with its portals, tenants, worker processes, waits and readings."""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import ConsumerRecord

from pipeline.devtools.chaos.golden import Golden, compare
from pipeline.devtools.chaos.workers import Workers
from pipeline.devtools.chaos.workload import Item, Located, publish_located
from pipeline.devtools.crmdouble.server import CRMDouble
from pipeline.devtools.demo import metric_total
from pipeline.devtools.devstack import (
    DevTenant,
    activation_fields,
    publish_tenants,
    seed_tenant,
    settings_from,
    worker_env,
)
from pipeline.devtools.samples import sample_tenants
from pipeline.operations.operator import build_command, send_and_follow
from schemas.control import CommandResult

__all__ = ["OPERATOR_KEY", "ChaosRun", "Knobs", "WaitFailed", "wait_for"]

OPERATOR_KEY = "chaos-operator-signing-key"


class WaitFailed(AssertionError):
    """A wait ran out: the message says what it waited for and what it saw last."""


async def wait_for(check: Callable[[], Awaitable[bool]], what: str, *, within: float,
                   interval: float = 0.25, seen: Callable[[], str] | None = None) -> float:
    """Poll `check` until it holds; the seconds it took. Fails loudly with `what`."""
    started = time.monotonic()
    while not await check():
        if time.monotonic() - started > within:
            raise WaitFailed(f"waited {within:.0f}s for {what}"
                             + (f"; last seen: {seen()}" if seen else ""))
        await asyncio.sleep(interval)
    return time.monotonic() - started


@dataclass(frozen=True)
class Knobs:
    """How long and how hard: one set for the short form (tests), one for the long (CLI)."""

    session_timeout: float  # CALLSYNC_KAFKA__SESSION_TIMEOUT_SECONDS
    crm_timeout: float  # CALLSYNC_CRM__TIMEOUT_SECONDS
    outage_probe: float  # CALLSYNC_OUTAGE_PROBE_SECONDS
    max_attempts: int  # CALLSYNC_CRM__MAX_ATTEMPTS
    backoff_base: float
    backoff_max: float
    fault_window: float  # how long a portal stays down or hostile
    broker_down: float  # how long the broker stays down
    quiet: float  # no change for this long, everything committed: the run is over
    settle_within: float  # the longest wait for convergence after the fault
    step_within: float  # the longest wait for a step of a scenario (a progress mark)
    hostile: int  # hostile records in hostile-records
    max_string: int  # the longest huge string of a hostile record

    def env(self) -> dict[str, str]:
        return {"CALLSYNC_KAFKA__SESSION_TIMEOUT_SECONDS": f"{self.session_timeout:g}",
                "CALLSYNC_CRM__TIMEOUT_SECONDS": f"{self.crm_timeout:g}",
                "CALLSYNC_OUTAGE_PROBE_SECONDS": f"{self.outage_probe:g}",
                "CALLSYNC_CRM__MAX_ATTEMPTS": str(self.max_attempts),
                "CALLSYNC_CRM__BACKOFF_BASE_SECONDS": f"{self.backoff_base:g}",
                "CALLSYNC_CRM__BACKOFF_MAX_SECONDS": f"{self.backoff_max:g}",
                "CALLSYNC_CRM__UPLOAD_LINGER_SECONDS": "0.2",
                "CALLSYNC_OPERATOR_KEY": OPERATOR_KEY}


class ChaosRun:
    """The double (in a thread), its portals and tenants, and the workers of one consumer
    group; topics and group are the run's own (`chaos-<id>`), so runs share a broker."""

    def __init__(self, *, bootstrap: str, workdir: Path, tenants: int, knobs: Knobs,
                 partitions: int = 6, extra_env: dict[str, str] | None = None) -> None:
        self.bootstrap = bootstrap
        self.workdir = workdir
        self.knobs = knobs
        self.app_id = f"chaos-{uuid.uuid4().hex[:8]}"
        self.double = CRMDouble()
        self.url = self.double.start_in_thread()
        self.tenants: list[DevTenant] = [seed_tenant(self.double.state, self.url, s, n)
                                         for n, s in enumerate(sample_tenants(tenants))]
        env = worker_env(bootstrap=bootstrap, app_id=self.app_id, metrics_port=0,
                         data_dir=str(workdir / "data"), partitions=partitions,
                         extra={**knobs.env(), **(extra_env or {})})
        self.settings = settings_from(env)
        self.workers = Workers(env, workdir)
        self.admin = httpx.AsyncClient(base_url=self.url + "/_admin", timeout=60)
        self.published: list[tuple[Item, Located]] = []
        self._watch: asyncio.Task[None] | None = None

    @property
    def calls_topic(self) -> str:
        return self.settings.topics.calls

    def tenant(self, tenant_id: str) -> DevTenant:
        return next(t for t in self.tenants if t.config.tenant_id == tenant_id)

    # -- workers -----------------------------------------------------------------------------

    async def start(self, names: Sequence[str] = ("w1",)) -> None:
        """Tenants on their topics, the workers up and every tenant's config and mapping read
        (a call read before its tenant's config would be an unknown tenant's)."""
        await publish_tenants(self.tenants, self.bootstrap, self.settings)
        for name in names:
            self.workers.start(name)
        self._watch = asyncio.create_task(self.workers.watch(), name="chaos-watch")
        want = 2 * len(self.tenants)

        async def read_all_tenants() -> bool:
            return self._metric_sum(names, "callsync_tenant_updates_total") >= want

        await wait_for(read_all_tenants, f"the workers to read {want} tenant records",
                       within=self.knobs.step_within, interval=0.5, seen=self.workers.tail)

    async def wait_ready(self, name: str) -> None:
        """Until the worker says on /readyz that it holds partitions and is not rebalancing."""
        url = f"http://127.0.0.1:{self.workers.metrics_port(name)}/readyz"

        async def ready() -> bool:
            try:
                async with httpx.AsyncClient(timeout=2) as http:
                    return (await http.get(url)).status_code == 200
            except httpx.HTTPError:
                return False

        await wait_for(ready, f"worker {name} to be ready (partitions assigned)",
                       within=self.knobs.step_within, interval=0.5, seen=self.workers.tail)

    def _metric_sum(self, names: Sequence[str], metric: str) -> float:
        total = 0.0
        for name in names:
            with contextlib.suppress(OSError):
                total += metric_total(self.workers.metrics_port(name), metric)
        return total

    # -- input -------------------------------------------------------------------------------

    async def publish(self, items: Sequence[Item], *,
                      partition: Callable[[bytes | None], int] | None = None) -> None:
        located = await publish_located(self.bootstrap, self.calls_topic, items,
                                        partition=partition)
        self.published += list(zip(items, located, strict=True))

    # -- the double --------------------------------------------------------------------------

    def calls(self, tenant_id: str | None = None) -> int:
        """Calls the portals hold now (a length read: safe from this thread)."""
        portals = self.double.state.portals
        names = [tenant_id] if tenant_id else [t.config.tenant_id for t in self.tenants]
        return sum(len(portals[n].calls) for n in names)

    def counts(self) -> tuple[int, ...]:
        portals = self.double.state.portals
        return tuple(len(getattr(portals[t.config.tenant_id], kind)) for t in self.tenants
                     for kind in ("calls", "customers", "orders", "tasks"))

    async def wait_calls(self, count: int, what: str, tenant_id: str | None = None, *,
                         at_rest_fails: bool = True) -> None:
        """Until the portals hold `count` calls; fails at once if the run came to rest short of
        it (every record committed, nothing changing for 2 x `quiet` s): waiting cannot help
        (unless something else, a replay, is still to deliver: `at_rest_fails=False`)."""
        last = [self.calls(tenant_id), time.monotonic()]

        async def reached() -> bool:
            now, seen = time.monotonic(), self.calls(tenant_id)
            if seen != last[0]:
                last[:] = [seen, now]
            elif at_rest_fails and now - last[1] > 2 * self.knobs.quiet and \
                    await self.lag() == 0:
                raise WaitFailed(f"{seen} calls in {tenant_id or 'all portals'}, short of "
                                 f"{count} ({what}), and every record is committed")
            return seen >= count

        await wait_for(reached, f"{count} calls in {tenant_id or 'all portals'} ({what})",
                       within=self.knobs.step_within,
                       seen=lambda: f"{self.calls(tenant_id)} calls\n{self.workers.tail(15)}")

    async def fault(self, **spec: Any) -> None:
        response = await self.admin.post("/faults", json=spec)
        response.raise_for_status()

    async def clear_faults(self, portal: str) -> None:
        (await self.admin.delete("/faults", params={"portal": portal})).raise_for_status()

    async def faults(self) -> list[dict[str, Any]]:
        response = await self.admin.get("/faults")
        response.raise_for_status()
        return list(response.json())

    async def stats(self) -> dict[str, Any]:
        response = await self.admin.get("/stats")
        response.raise_for_status()
        return dict(response.json())

    async def snapshot(self, tenant_id: str) -> dict[str, Any]:
        response = await self.admin.get(f"/portals/{tenant_id}")
        response.raise_for_status()
        return dict(response.json())

    async def matches(self, goldens: dict[str, Golden]) -> bool:
        for tenant_id, golden in goldens.items():
            tallies = compare(golden, await self.snapshot(tenant_id))
            if not all(t.clean for t in tallies.values()):
                return False
        return True

    # -- Kafka -------------------------------------------------------------------------------

    async def lag(self) -> int | None:
        """Records of the call topic past the group's commit points; None if nobody answers."""
        try:
            async with asyncio.timeout(15):
                return await self._lag()
        except Exception:  # noqa: BLE001 - a broker that is down is an answer too
            return None

    async def _lag(self) -> int:
        return sum(max(0, end - max(0, committed))
                   for committed, end in (await self.positions()).values())

    async def positions(self) -> dict[int, tuple[int, int]]:
        """Per partition of the call topic: (the group's committed offset, the end offset)."""
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await consumer.start()
        await admin.start()
        try:
            partitions = consumer.partitions_for_topic(self.calls_topic)
            if not partitions:
                await consumer._client.force_metadata_update()
                partitions = consumer.partitions_for_topic(self.calls_topic) or set()
            tps = [TopicPartition(self.calls_topic, p) for p in sorted(partitions)]
            ends = await consumer.end_offsets(tps)
            committed = await admin.list_consumer_group_offsets(self.app_id, partitions=tps)
            return {tp.partition: (committed[tp].offset if committed.get(tp) else 0, ends[tp])
                    for tp in tps}
        finally:
            await consumer.stop()
            await admin.close()

    async def read_topic(self, topic: str, within: float = 120) -> list[ConsumerRecord[Any, Any]]:
        """Every record of `topic` from its start to its end as of now."""
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False,
                                    max_partition_fetch_bytes=4 * 1024 * 1024)
        await consumer.start()
        try:
            await consumer._client.force_metadata_update()
            tps = [TopicPartition(topic, p)
                   for p in sorted(consumer.partitions_for_topic(topic) or set())]
            if not tps:
                return []
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            records: list[ConsumerRecord[Any, Any]] = []
            deadline = time.monotonic() + within
            while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
                if time.monotonic() > deadline:
                    raise WaitFailed(f"waited {within:.0f}s to read {topic} to its end")
                batch = await consumer.getmany(timeout_ms=1000)
                records += [m for ms in batch.values() for m in ms]
            return records
        finally:
            await consumer.stop()

    async def command(self, kind: str, tenant_id: str, *, follow: float = 30,
                      **fields: Any) -> CommandResult | None:
        command = build_command(kind, tenant_id, operator="chaos", **fields)
        return await send_and_follow(self.settings, command, follow=follow, out=io.StringIO())

    async def replay_settled(self, tenant_id: str) -> bool:
        """The tenant is active and no replay of it is left to run."""
        result = await self.command("status", tenant_id, follow=15)
        if result is None or result.status != "done":
            return False
        replay = result.data.get("replay")
        return bool(result.data.get("state") == "active" and (not replay or replay.get("done")))

    def activation(self, tenant: DevTenant, api_key: str, **fields: Any) -> dict[str, Any]:
        return activation_fields(self.settings, tenant, api_key, **fields)

    # -- the end -----------------------------------------------------------------------------

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None
        await asyncio.to_thread(self.workers.stop_all)
        await self.admin.aclose()
        self.double.stop_thread()

    async def drop_topics(self) -> None:
        """The run's topics (`<app id>.*`, `<app id>-*`), so a shared broker stays small."""
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            mine = [t for t in await admin.list_topics() if t.startswith(self.app_id)]
            if mine:
                await admin.delete_topics(mine)
        finally:
            await admin.close()
