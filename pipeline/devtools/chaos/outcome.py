"""After the fault: wait for convergence, then read what became of every record."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable

from pipeline.devtools.chaos.golden import KINDS, Golden, compare
from pipeline.devtools.chaos.harness import ChaosRun
from pipeline.devtools.chaos.report import ScenarioReport
from pipeline.devtools.chaos.workers import agent_crashes

__all__ = ["converge", "observe"]

Ready = Callable[[], Awaitable[bool]]


async def converge(run: ChaosRun, goldens: dict[str, Golden], *, since: float,
                   ready: Ready | None = None) -> float | None:
    """Seconds from `since` (the fault's end) until every record is committed and every portal
    holds its golden; None if the run came to rest elsewhere (everything committed, nothing
    changing for `quiet` seconds, `ready` true) or `settle_within` passed."""
    knobs = run.knobs
    want = tuple(n for g in goldens.values() for n in g.sizes().values())
    last: tuple[object, ...] = ()
    changed = time.monotonic()
    while True:
        lag = await run.lag()
        counts = run.counts()
        now = time.monotonic()
        if (lag, counts) != last:
            last, changed = (lag, counts), now
        if lag == 0 and counts == want and await run.matches(goldens):
            return max(0.0, now - since)
        if lag == 0 and now - changed >= knobs.quiet and (ready is None or await ready()):
            return None
        if now - since > knobs.settle_within:
            return None
        await asyncio.sleep(0.5)


async def quiesce(run: ChaosRun, seconds: float, within: float) -> None:
    """Until the portals have not changed for `seconds` (late duplicates show up here)."""
    deadline = time.monotonic() + within
    last, changed = run.counts(), time.monotonic()
    while time.monotonic() - changed < seconds and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        if run.counts() != last:
            last, changed = run.counts(), time.monotonic()


async def observe(run: ChaosRun, goldens: dict[str, Golden], report: ScenarioReport) -> None:
    """Fill the report from the double, the topics and the worker logs (workers still up)."""
    await quiesce(run, min(run.knobs.quiet / 3, 5.0), within=60)
    final_lag = await run.lag()
    report.settled = final_lag == 0
    report.details["final_lag"] = final_lag
    positions = await run.positions()
    report.details["committed"] = {p: list(v) for p, v in positions.items()}
    stats = await run.stats()
    lost_calls: set[str] = set()
    for tenant_id, golden in goldens.items():
        snapshot = await run.snapshot(tenant_id)
        for kind, tally in compare(golden, snapshot).items():
            report.tallies[kind].add(tally)
        lost_calls |= set(golden.calls) - {c.get("externalId") for c in snapshot["calls"]}
        revoked = {k["label"] for k in snapshot["keys"] if not k["active"]}
        by_key = stats.get(tenant_id, {}).get("by_key", {})
        report.dead_key_requests += sum(by_key.get(label, {}).get("403", 0) for label in revoked)

    invalid = await run.read_topic(run.settings.topics.invalid)
    sources: dict[tuple[int, int], str] = {}
    for m in invalid:
        headers = {k: v for k, v in m.headers}
        where = (int(headers.get("callsync-source-partition", b"-1")),
                 int(headers.get("callsync-source-offset", b"-1")))
        sources[where] = headers.get("callsync-reason", b"").decode(errors="replace")
    report.details["invalid_reasons"] = dict(Counter(r.split(":")[0] for r in sources.values()))
    dead = await run.read_topic(run.settings.topics.dead_letter)
    parked = {dict(m.headers).get("callsync-call-id", b"").decode() for m in dead}
    report.details["dead_letter_reasons"] = dict(Counter(
        dict(m.headers).get("callsync-reason", b"").decode().split(":")[0] for m in dead))

    missing: list[str] = []
    valid_invalid: Counter[str] = Counter()
    lost_invalid = 0
    for item, where in run.published:
        if item.event is None:
            report.hostile += 1
            if not sources.get(where):
                report.hostile_missing += 1
                if len(missing) < 10:
                    missing.append(f"{item.kind}@{where[0]}:{where[1]}")
        elif where in sources:
            valid_invalid[sources[where][:120]] += 1
            lost_invalid += item.event["call_id"] in lost_calls
    report.details["hostile_missing"] = missing
    if report.hostile:
        report.details["hostile_kinds"] = dict(Counter(i.kind for i, _ in run.published
                                                       if i.event is None))
    if valid_invalid:
        report.details["valid_events_on_invalid_topic"] = dict(valid_invalid.most_common(10))
    if lost_calls:  # where the calls the CRM lacks ended up instead
        at = {i.event["call_id"]: where for i, where in run.published if i.event is not None}
        past = sorted(at[c] for c in lost_calls
                      if c in at and at[c][1] < positions.get(at[c][0], (0, 0))[0])
        report.details["lost_calls_where"] = {
            "dead_letter": len(lost_calls & parked), "invalid": lost_invalid,
            "nowhere": len(lost_calls - parked) - lost_invalid,
            "below_the_commit_point": len(past), "first_below": past[:5]}

    crashes, lines = agent_crashes(run.workers.logs())
    report.agent_crashes = dict(crashes)
    report.details["crash_lines"] = lines
    report.worker_exits = list(run.workers.exits)
    report.kills = run.workers.kills
    report.details["worker_starts"] = run.workers.starts
    report.details["stop_codes"] = list(run.workers.stop_codes)
    report.details["crm_requests"] = {t: s["requests"] for t, s in stats.items()}
    report.details["crm_503"] = sum(s["by_status"].get("503", 0) for s in stats.values())
    report.details["expected"] = {k: sum(g.sizes()[k] for g in goldens.values()) for k in KINDS}
