"""What every benchmark section stands on: a broker, two doubles, a worker of its own, tenants."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.devtools.bench_double import UNTHROTTLED, BenchDouble
from pipeline.devtools.demo import wait_for_metric
from pipeline.devtools.devstack import (
    DevTenant,
    WorkerProcess,
    committed_everything,
    publish_tenants,
    seed_tenant,
    settings_from,
    worker_env,
)
from pipeline.devtools.localkafka import free_port
from pipeline.devtools.samples import SampleTenant
from pipeline.streams.producing import publish, record_for_call

__all__ = ["Section", "Stack", "bench_tenant", "proc_status_mib", "records_of"]


def bench_tenant(name: str, employees: int = 4) -> SampleTenant:
    """A tenant like the samples' with `employees` (at most 50: the double's user ids)."""
    emps = tuple((f"{name}-e{n}", str(100 + n)) for n in range(1, min(employees, 50) + 1))
    return SampleTenant(name, "Europe/Kyiv", "+38067", 12, ("+380443334499",), emps)


def records_of(events: Iterable[dict[str, Any]]) -> list[tuple[bytes | None, bytes | None,
                                                                 int | None]]:
    return [record_for_call(json.dumps(e).encode()) for e in events]


def proc_status_mib(pid: int, field_name: str) -> float:
    """VmRSS, VmHWM, … of a process from /proc/PID/status, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (/proc/PID/stat, clock ticks of 1/100 s)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100


@dataclass
class Stack:
    """One broker and two doubles for the whole run: `limited` with the limits asked for
    (retailCRM's 10/40 by default), `open` unthrottled."""

    bootstrap: str
    workdir: Path
    general_rps: int
    telephony_rps: int
    limited: BenchDouble = field(init=False)
    open: BenchDouble = field(init=False)

    def __post_init__(self) -> None:
        self.limited = BenchDouble(general_rps=self.general_rps,
                                   telephony_rps=self.telephony_rps)
        self.open = BenchDouble(general_rps=UNTHROTTLED, telephony_rps=UNTHROTTLED)
        self.limited.start_in_thread()
        self.open.start_in_thread()

    def close(self) -> None:
        self.limited.stop_thread()
        self.open.stop_thread()


class Section:
    """A worker of its own (app id, topics, data dir) for one section, and its tenants."""

    def __init__(self, stack: Stack, name: str, double: BenchDouble) -> None:
        self.stack, self.double = stack, double
        self.app_id = f"bench-{name}-{uuid.uuid4().hex[:6]}"
        self.port = free_port()
        self.env = worker_env(bootstrap=stack.bootstrap, app_id=self.app_id,
                              metrics_port=self.port, partitions=6,
                              data_dir=str(stack.workdir / f"{self.app_id}-data"))
        self.worker = WorkerProcess(self.env, stack.workdir / f"{self.app_id}.log")
        self.tenants: list[DevTenant] = []
        self.started = 0.0

    @property
    def calls_topic(self) -> str:
        return self.env["CALLSYNC_TOPICS__CALLS"]

    @property
    def pid(self) -> int:
        assert self.worker.proc is not None  # noqa: S101 - started before asked
        return self.worker.proc.pid

    def seed(self, samples: list[SampleTenant]) -> list[DevTenant]:
        first = len(self.tenants)
        devs = [seed_tenant(self.double.state, self.double.url, s, first + n)
                for n, s in enumerate(samples)]
        self.tenants += devs
        return devs

    def publish_tenants(self, devs: list[DevTenant]) -> None:
        asyncio.run(publish_tenants(devs, self.stack.bootstrap, settings_from(self.env)))

    def start(self, *, loaded: int | None = None) -> None:
        """Start the worker; wait until it stored `loaded` configs and mappings (all of its
        tenants' by default)."""
        self.started = time.monotonic()
        self.worker.start()
        wanted = 2 * len(self.tenants) if loaded is None else loaded
        wait_for_metric(self.port, "callsync_tenant_updates_total", wanted, self.worker,
                        timeout=600 + wanted / 20)

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=2) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def publish_calls(self, events: list[dict[str, Any]]) -> None:
        asyncio.run(publish(self.stack.bootstrap, self.calls_topic, records_of(events)))

    def settle(self, within: float = 1800) -> None:
        """Wait until the worker committed every call record; raise if it did not."""
        if not asyncio.run(committed_everything(self.stack.bootstrap, self.app_id,
                                                self.calls_topic, within=within,
                                                worker=self.worker)):
            raise TimeoutError(f"{self.app_id}: calls not committed within {within} s:\n"
                               + self.worker.log_tail())

    def stop(self) -> None:
        self.worker.stop()

    def portals(self) -> list[str]:
        return [d.sample.tenant_id for d in self.tenants]
