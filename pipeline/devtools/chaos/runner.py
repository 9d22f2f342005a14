"""Running scenarios: the short form (tests) and the long form (`python -m pipeline chaos`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from pipeline.devtools.brokers import kafka_broker
from pipeline.devtools.chaos.golden import Golden, expected
from pipeline.devtools.chaos.harness import ChaosRun, Knobs, WaitFailed, wait_for
from pipeline.devtools.chaos.hostile import with_hostile
from pipeline.devtools.chaos.outcome import converge, observe
from pipeline.devtools.chaos.report import ScenarioReport, table
from pipeline.devtools.chaos.scenarios import GROUPS, SCENARIOS, Context, Scenario
from pipeline.devtools.chaos.workload import workload
from pipeline.devtools.localkafka import LocalKafka

__all__ = ["LONG", "SHORT", "expand", "own_broker", "run_chaos", "run_scenario"]

SHORT = Knobs(session_timeout=6, crm_timeout=2, outage_probe=2, max_attempts=3,
              backoff_base=0.05, backoff_max=1, fault_window=12, broker_down=5, quiet=5,
              settle_within=90, step_within=40, hostile=1000, max_string=50_000)
LONG = Knobs(session_timeout=10, crm_timeout=5, outage_probe=10, max_attempts=6,
             backoff_base=0.1, backoff_max=5, fault_window=60, broker_down=20, quiet=20,
             settle_within=900, step_within=300, hostile=10_000, max_string=100_000)


def expand(names: Sequence[str]) -> list[str]:
    """Scenario names, `broker` and `portal-outage` standing for both of their variants."""
    found: list[str] = []
    for name in names or list(SCENARIOS):
        for one in GROUPS.get(name, [name]):
            if one not in SCENARIOS:
                raise SystemExit(f"no scenario {one!r}; there are: "
                                 f"{', '.join([*SCENARIOS, *GROUPS])}")
            if one not in found:
                found.append(one)
    return found


async def run_scenario(scenario: Scenario, *, bootstrap: str, events: int, tenants: int,
                       seed: int, knobs: Knobs, workdir: Path,
                       broker: LocalKafka | None = None,
                       extra_env: dict[str, str] | None = None) -> ScenarioReport:
    """One scenario from scratch (its own double, topics and consumer group); never raises
    for what happens in it: that is in the report."""
    report = ScenarioReport(scenario.name, events, tenants)
    started = time.monotonic()
    if scenario.own_broker:
        if broker is None:
            raise ValueError(f"{scenario.name} needs a broker of its own")
        bootstrap = broker.bootstrap_servers
    await asyncio.to_thread(workdir.mkdir, parents=True, exist_ok=True)
    run = ChaosRun(bootstrap=bootstrap, workdir=workdir, tenants=tenants, knobs=knobs,
                   extra_env=extra_env)
    goldens: dict[str, Golden] = {}
    try:
        load = workload([t.sample for t in run.tenants], events, seed=seed)
        if scenario.hostile:
            load = await asyncio.to_thread(
                with_hostile, load, knobs.hostile, seed_value=seed, max_string=knobs.max_string,
                tenant_ids=[t.config.tenant_id for t in run.tenants])
        goldens = {t.config.tenant_id: expected(load.events, t) for t in run.tenants}
        ctx = Context(run, load, goldens, knobs, random.Random(seed),  # noqa: S311
                      broker)
        phases = report.details.setdefault("phase_seconds", {})
        mark = time.monotonic()
        await run.start(scenario.workers)
        phases["start"], mark = round(time.monotonic() - mark, 1), time.monotonic()
        harm = await scenario.drive(ctx)
        phases["harm"], mark = round(time.monotonic() - mark, 1), time.monotonic()
        report.dead_key_allowed = harm.dead_key_allowed
        report.failed_checks += harm.failed_checks
        report.details.update(harm.details)
        report.converge_seconds = await converge(run, goldens, since=harm.ended,
                                                 ready=harm.ready)
        if harm.ready is not None:  # what a replay still does must be seen before the verdict
            try:
                await wait_for(harm.ready, "the tenant's replay to finish",
                               within=knobs.settle_within, interval=2)
            except WaitFailed as failed:
                report.failed_checks.append(str(failed))
        phases["converge"], mark = round(time.monotonic() - mark, 1), time.monotonic()
        await observe(run, goldens, report)
        phases["observe"] = round(time.monotonic() - mark, 1)
    except Exception as exc:  # noqa: BLE001 - the report says what went wrong
        report.error = f"{type(exc).__name__}: {exc}"[:3000]
        report.details["worker_log_tail"] = run.workers.tail(30)
        with contextlib.suppress(Exception):
            await observe(run, goldens, report)
    finally:
        closing = time.monotonic()
        await run.close()
        report.details["close_seconds"] = round(time.monotonic() - closing, 1)
        report.details["stop_codes"] = list(run.workers.stop_codes)
        report.details["workdir"] = str(workdir)
        if report.passed:  # a failed run's topics stay for a look (the broker is a test's)
            with contextlib.suppress(Exception):
                await run.drop_topics()
        report.seconds = time.monotonic() - started
        with contextlib.suppress(OSError):  # next to the worker logs, for a look afterwards
            (workdir / "report.json").write_text(json.dumps(report.as_dict(), indent=2,
                                                            default=str))
    return report


@contextlib.contextmanager
def own_broker(data_dir: Path) -> Iterator[LocalKafka]:
    """A broker for the broker scenarios alone: its data kept across a restart, on one port."""
    data_dir.mkdir(parents=True, exist_ok=True)
    broker = LocalKafka(data_dir=data_dir)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def run_chaos(names: Sequence[str], *, events: int, tenants: int, seed: int,
              as_json: bool = False, short: bool = False, keep: bool = False) -> int:
    chosen = [SCENARIOS[n] for n in expand(names)]
    knobs = SHORT if short else LONG
    workdir = Path(tempfile.mkdtemp(prefix="callsync-chaos-"))
    reports: list[ScenarioReport] = []
    print(f"chaos: {len(chosen)} scenario(s), {events} events over {tenants} tenants each, "
          f"seed {seed}, {'short' if short else 'long'} form; work dir {workdir}",
          file=sys.stderr, flush=True)
    with contextlib.ExitStack() as stack:
        shared = stack.enter_context(kafka_broker()) if any(
            not s.own_broker for s in chosen) else ""
        private = stack.enter_context(own_broker(workdir / "broker")) if any(
            s.own_broker for s in chosen) else None
        for scenario in chosen:
            report = asyncio.run(run_scenario(
                scenario, bootstrap=shared, events=events, tenants=tenants, seed=seed,
                knobs=knobs, workdir=workdir / scenario.name, broker=private))
            reports.append(report)
            print(f"  {scenario.name}: {'PASS' if report.passed else 'FAIL'} in "
                  f"{report.seconds:.0f}s", file=sys.stderr, flush=True)
    print(table(reports, as_json=as_json))
    if not keep and all(r.passed for r in reports):
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if all(r.passed for r in reports) else 1
