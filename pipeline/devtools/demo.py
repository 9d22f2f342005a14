"""The demo: a real Kafka broker, the retailCRM double, a worker, sample calls; what landed."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from pathlib import Path

from pipeline.devtools.brokers import kafka_broker
from pipeline.devtools.crmdouble.server import CRMDouble
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
from pipeline.devtools.samples import sample_calls, sample_tenants
from pipeline.streams.producing import publish, record_for_call

__all__ = ["metric_total", "run_demo", "scrape", "wait_for_metric"]


def scrape(port: int) -> dict[str, float]:
    """The worker's /metrics as {'name{labels}': value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    found: dict[str, float] = {}
    for line in text.splitlines():
        match = re.match(r"^([a-zA-Z_:][\w:]*(?:\{[^}]*\})?) (\S+)$", line)
        if match:
            found[match.group(1)] = float(match.group(2))
    return found


def metric_total(port: int, name: str) -> float:
    """The sum of a metric's series (every label set) on the worker's /metrics."""
    return sum(v for k, v in scrape(port).items() if k.split("{")[0] == name)


def wait_for_metric(port: int, name: str, at_least: float, worker: WorkerProcess,
                    timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not worker.alive():
            raise RuntimeError("the worker died:\n" + worker.log_tail())
        try:
            if metric_total(port, name) >= at_least:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{name} did not reach {at_least}:\n{worker.log_tail()}")


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)


def _serve_console(env: dict[str, str], workdir: Path, port: int) -> None:
    """Keep the stack up and serve the operator console on it until Ctrl-C."""
    password = secrets.token_urlsafe(12)
    console_dir = str(workdir / "console")
    base = [sys.executable, "-m", "pipeline", "console"]
    subprocess.run([*base, "add-user", "demo", "--dir", console_dir, "--password-stdin"],  # noqa: S603
                   env=env, input=password.encode(), check=True, capture_output=True)
    console = subprocess.Popen([*base, "--dir", console_dir, "--port", str(port)], env=env)  # noqa: S603
    print(f"\noperator console: http://127.0.0.1:{port}  (user demo, password {password}); "
          "Ctrl-C stops everything")
    try:
        console.wait()
    except KeyboardInterrupt:
        pass
    finally:
        console.terminate()
        console.wait(10)


def run_demo(*, calls: int = 120, tenants: int = 3, console_port: int | None = None) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="callsync-demo-"))
    app_id = f"demo-{uuid.uuid4().hex[:6]}"
    print(f"callsync demo: {calls} calls for {tenants} tenants (work dir {workdir})")
    with kafka_broker() as bootstrap:
        print(f"  Kafka broker ............ {bootstrap}")
        double = CRMDouble()
        url = double.start_in_thread()
        print(f"  retailCRM double ........ {url}")
        devs: list[DevTenant] = [seed_tenant(double.state, url, sample, n)
                                 for n, sample in enumerate(sample_tenants(tenants))]
        port = free_port()
        env = worker_env(bootstrap=bootstrap, app_id=app_id, metrics_port=port,
                         data_dir=str(workdir / "data"))
        worker = WorkerProcess(env, workdir / "worker.log")
        try:
            asyncio.run(publish_tenants(devs, bootstrap, settings_from(env)))
            worker.start()
            print(f"  worker .................. pid {worker.proc.pid if worker.proc else '?'}, "
                  f"metrics on http://127.0.0.1:{port}/metrics, log {worker.log_path}")
            wait_for_metric(port, "callsync_tenant_updates_total", 2 * len(devs), worker)
            events = sample_calls([d.sample for d in devs], calls, fresh_share=0.1)
            started = time.monotonic()
            asyncio.run(publish(bootstrap, env["CALLSYNC_TOPICS__CALLS"],
                                [record_for_call(json.dumps(e).encode()) for e in events]))
            done = asyncio.run(committed_everything(bootstrap, app_id,
                                                    env["CALLSYNC_TOPICS__CALLS"],
                                                    within=300, worker=worker))
            elapsed = time.monotonic() - started
            if not done:
                print("the worker did not finish in time:\n" + worker.log_tail())
                return 1
            print(f"\n{len(events)} call events delivered in {elapsed:.1f}s "
                  f"({len(events) / elapsed:.1f} events/s)\n")
            print(_summary(double, devs))
            metrics = scrape(port)
            requests = sum(v for k, v in metrics.items()
                           if k.startswith("callsync_crm_requests_total"))
            print(f"\nretailCRM requests: {requests:.0f} "
                  f"({requests / len(events):.2f} per call); "
                  f"503 answers from the portal: {_count_503(double)}")
            if console_port is not None:
                _serve_console(env, workdir, console_port)
        finally:
            worker.stop()
            double.stop_thread()
    return 0


def _summary(double: CRMDouble, devs: list[DevTenant]) -> str:
    rows = [["portal", "calls", "answered", "missed", "customers", "orders", "tasks", "pop-ups"]]
    for dev in devs:
        portal = double.state.portals[dev.sample.tenant_id]
        results = Counter(c["result"] for c in portal.calls.values())
        rows.append([portal.name, str(len(portal.calls)), str(results["answered"]),
                     str(len(portal.calls) - results["answered"]), str(len(portal.customers)),
                     str(len(portal.orders)), str(len(portal.tasks)),
                     str(len(portal.call_events))])
    first = double.state.portals[devs[0].sample.tenant_id]
    lines = [_table(rows), "", f"a few of what landed in '{first.name}':"]
    for call in list(first.calls.values())[:3]:
        lines.append(f"  call  {call['externalId']}  {call['date']}  {call['phone']}  "
                     f"{call['result']:<9}  handled by {_handler(call)}  "
                     f"source {call.get('source', {})}")
    for order in list(first.orders.values())[:2]:
        lines.append(f"  order {order['number']}  {order['externalId']}  "
                     f"customer {order['customer'].get('id')}  manager {order.get('managerId')}")
    for task in list(first.tasks.values())[:2]:
        lines.append(f"  task  {task['id']}  '{task['text']}' for user {task['performerId']} "
                     f"at {task['datetime']}")
    return "\n".join(lines)


def _handler(call: dict[str, object]) -> str:
    if call.get("userId"):
        return f"user {call['userId']}"
    return f"extension {call['code']}" if call.get("code") else "nobody"


def _count_503(double: CRMDouble) -> int:
    return sum(per.get(503, 0) for per in double.state.requests.values())
