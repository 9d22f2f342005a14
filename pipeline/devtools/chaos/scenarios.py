"""The faults: each scenario publishes its input, does its harm and says when the harm ended."""

from __future__ import annotations

import asyncio
import random
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pipeline.devtools.chaos.golden import Golden
from pipeline.devtools.chaos.harness import ChaosRun, Knobs, WaitFailed, wait_for
from pipeline.devtools.chaos.workload import Workload
from pipeline.devtools.localkafka import LocalKafka
from pipeline.streams.tables import tenant_partition

__all__ = ["SCENARIOS", "Context", "Harm", "Scenario"]

HUGE = 50 * 1024 * 1024


@dataclass
class Context:
    run: ChaosRun
    workload: Workload
    goldens: dict[str, Golden]
    knobs: Knobs
    rng: random.Random
    broker: LocalKafka | None = None  # the scenario's own broker (broker scenarios)


@dataclass
class Harm:
    """When the fault ended, what tells that its aftermath is over, and checks of its own."""

    ended: float
    ready: Callable[[], Awaitable[bool]] | None = None
    dead_key_allowed: int = 0
    failed_checks: list[str] = field(default_factory=list)
    details: dict[str, object] = field(default_factory=dict)


Drive = Callable[[Context], Awaitable[Harm]]


@dataclass(frozen=True)
class Scenario:
    name: str
    about: str
    drive: Drive
    workers: tuple[str, ...] = ("w1",)
    own_broker: bool = False
    hostile: bool = False


def _total(ctx: Context, tenant_id: str | None = None) -> int:
    goldens = [ctx.goldens[tenant_id]] if tenant_id else list(ctx.goldens.values())
    return sum(len(g.calls) for g in goldens)


def _busiest(ctx: Context) -> str:
    """The tenant with the most calls: the one a fault hurts most."""
    return max(sorted(ctx.goldens), key=lambda t: len(ctx.goldens[t].calls))


async def _split_publish(ctx: Context, share: float) -> int:
    """Publish the first `share` of the input; the index where the rest starts."""
    cut = int(len(ctx.workload.items) * share)
    await ctx.run.publish(ctx.workload.items[:cut])
    return cut


async def kill(ctx: Context) -> Harm:
    """The worker SIGKILLed five times at random moments while it delivers, restarted each time."""
    run, total = ctx.run, _total(ctx)
    await run.publish(ctx.workload.items)
    windows = [(0.05, 0.2), (0.2, 0.35), (0.35, 0.5), (0.5, 0.65), (0.65, 0.8)]
    marks = [ctx.rng.uniform(lo, hi) for lo, hi in windows]
    checks = []
    for n, mark in enumerate(marks, start=1):
        try:
            await run.wait_calls(int(mark * total), f"delivering before kill {n}")
        except WaitFailed as stalled:  # a symptom, not a harness failure: go on to the verdict
            checks.append(f"delivery stalled before kill {n}: {str(stalled).splitlines()[0]}")
            break
        await asyncio.sleep(ctx.rng.uniform(0, 0.5))  # a random moment, not a synchronisation
        run.workers.kill("w1")
        run.workers.start("w1")
    return Harm(ended=time.monotonic(), failed_checks=checks,
                details={"kill_marks": [round(m, 2) for m in marks]})


async def rebalance(ctx: Context) -> Harm:
    """Two workers; one SIGKILLed; a third joins and leaves; the killed one comes back."""
    run, total = ctx.run, _total(ctx)
    await run.publish(ctx.workload.items)

    async def w3_joins() -> None:
        run.workers.start("w3")
        await run.wait_ready("w3")

    async def w3_leaves() -> None:
        await asyncio.to_thread(run.workers.stop, "w3")

    async def w1_dies() -> None:
        run.workers.kill("w1")

    async def w1_returns() -> None:
        run.workers.start("w1")

    steps = [(0.2, "w1 is killed", w1_dies), (0.4, "w3 joins", w3_joins),
             (0.6, "w3 leaves", w3_leaves), (0.75, "w1 comes back", w1_returns)]
    checks = []
    for share, what, step in steps:
        try:
            await run.wait_calls(int(share * total), f"delivering before {what}")
        except WaitFailed as stalled:  # a symptom, not a harness failure: go on to the verdict
            checks.append(f"delivery stalled before {what}: {str(stalled).splitlines()[0]}")
            break
        await step()
    return Harm(ended=time.monotonic(), failed_checks=checks)


async def foreign_partitions(ctx: Context) -> Harm:
    """A producer with librdkafka's default partitioner (CRC32 of the key), so most tenants'
    calls land on partitions that are not theirs; two workers, each SIGKILLed once while the
    records are moved to their tenants' partitions and delivered."""
    run, total = ctx.run, _total(ctx)
    count = run.settings.topics.partitions

    def crc32(key: bytes | None) -> int:
        return zlib.crc32(key or b"") % count

    await run.publish(ctx.workload.items, partition=crc32)
    away = sorted(t.config.tenant_id for t in run.tenants
                  if crc32(t.config.tenant_id.encode()) != tenant_partition(t.config.tenant_id,
                                                                            count))

    def killed(name: str) -> Callable[[], Awaitable[None]]:
        async def step() -> None:
            run.workers.kill(name)
            run.workers.start(name)
        return step

    checks = [] if away else ["no tenant's calls landed away from home: nothing was tried"]
    for share, what, step in [(0.3, "w1 is killed", killed("w1")),
                              (0.6, "w2 is killed", killed("w2"))]:
        try:
            await run.wait_calls(int(share * total), f"delivering before {what}")
        except WaitFailed as stalled:  # a symptom, not a harness failure: go on to the verdict
            checks.append(f"delivery stalled before {what}: {str(stalled).splitlines()[0]}")
            break
        await asyncio.sleep(ctx.rng.uniform(0, 0.5))
        await step()
    return Harm(ended=time.monotonic(), failed_checks=checks,
                details={"tenants_away": len(away), "tenants": len(run.tenants)})


def broker(signal: str) -> Drive:
    async def drive(ctx: Context) -> Harm:
        """The broker stopped (SIGTERM or SIGKILL) mid-stream and started again on its data."""
        run, own = ctx.run, ctx.broker
        if own is None:
            raise RuntimeError("the broker scenario needs a broker of its own")
        cut = await _split_publish(ctx, 0.7)
        await run.wait_calls(int(0.3 * _total(ctx)), "delivering before the broker stops")
        if signal == "term":
            await asyncio.to_thread(own.stop)
        else:
            await asyncio.to_thread(own.kill)
        down = time.monotonic()
        await asyncio.sleep(ctx.knobs.broker_down)  # the outage itself
        await asyncio.to_thread(own.start)

        async def answers() -> bool:
            return await run.lag() is not None

        await wait_for(answers, "the restarted broker to answer", within=120, interval=1)
        await run.publish(ctx.workload.items[cut:])
        return Harm(ended=time.monotonic(),
                    details={"broker_down_seconds": round(time.monotonic() - down, 1)})
    return drive


def portal_outage(kind: str) -> Drive:
    async def drive(ctx: Context) -> Harm:
        """One tenant's portal answering 5xx, or not in time, for the fault window."""
        run, victim = ctx.run, _busiest(ctx)
        cut = await _split_publish(ctx, 0.4)
        await run.wait_calls(int(0.15 * _total(ctx, victim)), "before the outage", victim)
        if kind == "5xx":
            await run.fault(portal=victim, status=500)
        else:
            await run.fault(portal=victim, latency=ctx.knobs.crm_timeout + 1.0)
        await run.publish(ctx.workload.items[cut:])
        await asyncio.sleep(ctx.knobs.fault_window)  # the outage itself
        await run.clear_faults(victim)
        return Harm(ended=time.monotonic(), ready=lambda: run.replay_settled(victim),
                    details={"victim": victim})
    return drive


async def revoke_replay(ctx: Context) -> Harm:
    """A key revoked while its calls flow; re-activated with a new key and
    send_after_reactivation; the worker SIGKILLed twice during that replay."""
    run, victim = ctx.run, _busiest(ctx)
    tenant = run.tenant(victim)
    own = _total(ctx, victim)
    first = await _split_publish(ctx, 0.4)
    await run.wait_calls(int(0.15 * own), "before the key is revoked", victim)
    revoked_at = time.monotonic()
    old_key = tenant.config.api_key.get_secret_value()
    (await run.admin.post(f"/portals/{victim}/keys/revoke", json={"key": old_key}))\
        .raise_for_status()
    second = first + int(len(ctx.workload.items) * 0.4)
    await run.publish(ctx.workload.items[first:second])

    async def all_settled() -> bool:
        return await run.lag() == 0

    await wait_for(all_settled, "every record committed (the revoked tenant's parked)",
                   within=ctx.knobs.step_within, interval=1, seen=run.workers.tail)
    parked_at = run.calls(victim)
    (await run.admin.post(f"/portals/{victim}/keys",
                          json={"key": f"{old_key}-rotated", "label": f"{victim}-rotated"}))\
        .raise_for_status()
    accepted = await run.command("activate", victim, follow=30, **run.activation(
        tenant, f"{old_key}-rotated", send_after_reactivation=True))
    if accepted is None or accepted.status in ("refused", "failed"):
        raise RuntimeError(f"the re-activation was not accepted: {accepted}")
    ended = time.monotonic()
    await run.publish(ctx.workload.items[second:])
    kills_in_replay = 0
    for share in (0.3, 0.6):
        await run.wait_calls(parked_at + int(share * (own - parked_at)), "replaying", victim,
                             at_rest_fails=False)
        kills_in_replay += run.calls(victim) < own
        run.workers.kill("w1")
        run.workers.start("w1")
    minutes = (time.monotonic() - revoked_at) / run.settings.broken_probe_seconds
    return Harm(ended=ended, ready=lambda: run.replay_settled(victim),
                dead_key_allowed=3 + int(minutes),
                details={"victim": victim, "delivered_before_replay": parked_at,
                         "kills_during_replay": kills_in_replay})


async def late_task(ctx: Context) -> Harm:
    """tasks/create carried out by the portal but answered after the client's timeout."""
    run = ctx.run
    victims = sorted(ctx.rng.sample(sorted(ctx.goldens), 3))
    late = max(1, min(20, min(len(ctx.goldens[v].tasks) for v in victims) // 2))
    for victim in victims:
        await run.fault(portal=victim, method="/api/tasks/create", apply_first=True,
                        latency=ctx.knobs.crm_timeout + 1.0, count=late)
    await run.publish(ctx.workload.items)

    async def answered_late() -> bool:
        return not any(f["portal"] in victims for f in await run.faults())

    await wait_for(answered_late, f"{late} late task answers in each of {victims}",
                   within=ctx.knobs.settle_within, interval=1, seen=run.workers.tail)
    return Harm(ended=time.monotonic(), details={"victims": victims, "late_per_victim": late})


async def hostile_records(ctx: Context) -> Harm:
    """Hostile records in between valid ones; nothing but publishing them is done."""
    await ctx.run.publish(ctx.workload.items)
    return Harm(ended=time.monotonic())


async def hostile_portal(ctx: Context) -> Harm:
    """One portal dripping its answers past the timeout, answering 50 MB, answering
    `{"success": true}` with nothing else — in turns, until the other tenants are done."""
    run, victim = ctx.run, _busiest(ctx)
    others = {t: g for t, g in ctx.goldens.items() if t != victim}
    await run.publish(ctx.workload.items)
    await run.wait_calls(int(0.1 * _total(ctx, victim)), "before the portal turns", victim)
    phases: list[tuple[str, dict[str, Any]]] = [
        ("drip", {"drip_seconds": ctx.knobs.crm_timeout * 2}), ("huge", {"huge_bytes": HUGE}),
        ("malformed", {"malformed": True})]
    started, done, turn = time.monotonic(), False, 0
    others_done_at: float | None = None
    seen: list[str] = []
    while turn < len(phases) or not done:
        name, spec = phases[turn % len(phases)]
        seen.append(name)
        await run.fault(portal=victim, **spec)
        await asyncio.sleep(ctx.knobs.fault_window / len(phases))  # this turn's harm
        await run.clear_faults(victim)
        turn += 1
        done = done or await run.matches(others)
        if done and others_done_at is None:
            others_done_at = time.monotonic() - started
        if time.monotonic() - started > ctx.knobs.settle_within:
            break
    checks = [] if done else ["the other tenants did not reach their golden while one "
                              "portal was hostile"]
    return Harm(ended=time.monotonic(), ready=lambda: run.replay_settled(victim),
                failed_checks=checks,
                details={"victim": victim, "turns": seen, "others_done_after_s":
                         None if others_done_at is None else round(others_done_at, 1)})


SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("kill", "worker SIGKILLed 5 times while delivering", kill),
    Scenario("rebalance", "2 workers, one killed, a third joins and leaves", rebalance,
             workers=("w1", "w2")),
    Scenario("broker-term", "broker SIGTERMed mid-stream, restarted", broker("term"),
             own_broker=True),
    Scenario("broker-kill", "broker SIGKILLed mid-stream, restarted", broker("kill"),
             own_broker=True),
    Scenario("portal-outage-5xx", "one portal answering 500", portal_outage("5xx")),
    Scenario("portal-outage-timeout", "one portal not answering in time",
             portal_outage("timeout")),
    Scenario("revoke-replay", "key revoked, re-activated with replay, kills during it",
             revoke_replay),
    Scenario("late-task", "tasks/create applied, answered after the timeout", late_task),
    Scenario("foreign-partitions", "a CRC32 producer: calls moved home, 2 workers killed",
             foreign_partitions, workers=("w1", "w2")),
    Scenario("hostile-records", "hostile records interleaved with valid ones",
             hostile_records, hostile=True),
    Scenario("hostile-portal", "one portal dripping, huge and malformed", hostile_portal),
)}
# The names the brief uses: `broker` and `portal-outage` run both of their variants.
GROUPS = {"broker": ["broker-term", "broker-kill"],
          "portal-outage": ["portal-outage-5xx", "portal-outage-timeout"]}
