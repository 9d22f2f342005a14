"""The benchmark: throughput, CRM requests per call and worker memory, measured in one run."""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from pipeline.devtools.brokers import kafka_broker
from pipeline.devtools.crmdouble.server import CRMDouble
from pipeline.devtools.demo import scrape, wait_for_metric
from pipeline.devtools.devstack import (
    WorkerProcess,
    committed_everything,
    publish_tenants,
    seed_tenant,
    settings_from,
    worker_env,
)
from pipeline.devtools.localkafka import free_port
from pipeline.devtools.samples import sample_calls, sample_tenants
from pipeline.producing import publish, record_for_call

__all__ = ["run_bench"]


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _requests(port: int) -> float:
    return sum(v for k, v in scrape(port).items() if k.startswith("callsync_crm_requests_total{"))


def run_bench(*, calls: int = 1500, tenants: int = 3, out: str | None = None) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="callsync-bench-"))
    app_id = f"bench-{uuid.uuid4().hex[:6]}"
    results: dict[str, Any] = {"calls": calls, "tenants": tenants}
    with kafka_broker() as bootstrap:
        double = CRMDouble()
        url = double.start_in_thread()
        devs = [seed_tenant(double.state, url, s, n)
                for n, s in enumerate(sample_tenants(tenants))]
        port = free_port()
        env = worker_env(bootstrap=bootstrap, app_id=app_id, metrics_port=port,
                         data_dir=str(workdir / "data"), partitions=6)
        worker = WorkerProcess(env, workdir / "worker.log")
        try:
            asyncio.run(publish_tenants(devs, bootstrap, settings_from(env)))
            worker.start()
            wait_for_metric(port, "callsync_tenant_updates_total", 2 * len(devs), worker)
            events = sample_calls([d.sample for d in devs], calls, seed=99)
            records = [record_for_call(json.dumps(e).encode()) for e in events]
            topic = env["CALLSYNC_TOPICS__CALLS"]
            for label in ("first", "again"):
                before = _requests(port)
                started = time.monotonic()
                asyncio.run(publish(bootstrap, topic, records))
                if not asyncio.run(committed_everything(bootstrap, app_id, topic, within=900,
                                                        worker=worker)):
                    print(worker.log_tail())
                    return 1
                seconds = time.monotonic() - started
                results[label] = {"seconds": round(seconds, 2),
                                  "events_per_second": round(calls / seconds, 1),
                                  "crm_requests": _requests(port) - before}
            results["crm_requests_per_call"] = round(results["first"]["crm_requests"] / calls, 2)
            results["refeed_speedup"] = round(results["first"]["seconds"]
                                              / results["again"]["seconds"], 1)
            results["worker_peak_rss_mib"] = round(_peak_rss_mib(worker.proc.pid), 1) \
                if worker.proc else None
            results["double_503"] = sum(p.get(503, 0) for p in double.state.requests.values())
            busiest = max(devs, key=lambda d: sum(1 for e in events
                                                   if e["tenant_id"] == d.sample.tenant_id))
            name = busiest.sample.tenant_id
            own = sum(1 for e in events if e["tenant_id"] == name)
            general = sum(n for (portal, method), n in double.state.by_method.items()
                          if portal == name and not method.startswith("/api/telephony/")
                          and not method.startswith("/api/integration-modules/"))
            seconds = results["first"]["seconds"]
            results["busiest_tenant"] = {
                "calls": own, "calls_per_second": round(own / seconds, 1),
                "general_requests_per_call": round(general / own, 2),
                # retailCRM allows 10 general requests/s per key: how much of that was used
                "rate_limit_utilisation": round(general / (10 * seconds), 2)}
        finally:
            worker.stop()
            double.stop_thread()
    text = json.dumps(results, indent=2)
    print(text)
    if out:
        Path(out).write_text(text + "\n")
    return 0
