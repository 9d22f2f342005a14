"""A running callsync for end-to-end tests: the double, tenants, topics and a worker process."""

from __future__ import annotations

import asyncio
import gc
import io
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from pipeline.devtools.crmdouble.server import CRMDouble
from pipeline.devtools.demo import wait_for_metric
from pipeline.devtools.devstack import (
    DevTenant,
    WorkerProcess,
    activation_fields,
    committed_everything,
    publish_tenants,
    seed_tenant,
    settings_from,
    worker_env,
)
from pipeline.devtools.localkafka import free_port
from pipeline.devtools.samples import SampleTenant
from pipeline.operations.operator import build_command, send_and_follow
from pipeline.streams.producing import Record, publish, record_for_call
from schemas.control import CommandResult

OPERATOR_KEY = "e2e-operator-signing-key"
StackFactory = Callable[..., "Stack"]


@dataclass
class Stack:
    bootstrap: str
    workdir: Path
    samples: list[SampleTenant]
    partitions: int = 4
    extra_env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.app_id = f"e2e-{uuid.uuid4().hex[:8]}"
        self.double = CRMDouble()
        # The double stamps a request's arrival when its thread gets to it, and retailCRM's
        # window is checked against those stamps (the client keeps a 30 ms guard). A full
        # collection of everything earlier tests left in this process can hold the thread
        # longer than that; what exists now is frozen out of the collector's full passes.
        gc.collect()
        gc.freeze()
        self.double_url = url = self.double.start_in_thread()
        self.tenants: list[DevTenant] = [seed_tenant(self.double.state, url, s, n)
                                         for n, s in enumerate(self.samples)]
        self.metrics_port = free_port()
        self.env = worker_env(bootstrap=self.bootstrap, app_id=self.app_id,
                              metrics_port=self.metrics_port,
                              data_dir=str(self.workdir / "data"), partitions=self.partitions,
                              extra={"CALLSYNC_CRM__UPLOAD_LINGER_SECONDS": "0.2",
                                     "CALLSYNC_OPERATOR_KEY": OPERATOR_KEY,
                                     "CALLSYNC_KAFKA__SESSION_TIMEOUT_SECONDS": "8",
                                     **self.extra_env})
        self.settings = settings_from(self.env)
        self.worker = WorkerProcess(self.env, self.workdir / "worker.log")

    @property
    def calls_topic(self) -> str:
        return self.settings.topics.calls

    async def start(self) -> None:
        await publish_tenants(self.tenants, self.bootstrap, self.settings)
        self.worker.start()
        await asyncio.to_thread(wait_for_metric, self.metrics_port,
                                "callsync_tenant_updates_total", 2 * len(self.tenants),
                                self.worker)

    async def publish_calls(self, events: list[dict[str, Any]],
                            extra: list[Record] | None = None) -> None:
        records = [record_for_call(json.dumps(e).encode()) for e in events]
        await publish(self.bootstrap, self.calls_topic, records + (extra or []))

    async def wait_done(self, within: float = 240) -> None:
        done = await committed_everything(self.bootstrap, self.app_id, self.calls_topic,
                                          within=within, worker=self.worker)
        assert done, "the worker did not commit every call in time:\n" + self.worker.log_tail()

    async def read_topic(self, topic: str, within: float = 60) -> list[Any]:
        """Every record on `topic` as it is now: each partition read to the end offset it had
        when asked (a topic not made yet has none). Reading until a quiet poll, as before,
        could stop early on a loaded host, and a check that nothing leaked then saw nothing."""
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            if topic not in await admin.list_topics():
                return []
            (described,) = await admin.describe_topics([topic])
        finally:
            await admin.close()
        tps = [TopicPartition(topic, p["partition"]) for p in described["partitions"]]
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            records: list[Any] = []
            deadline = time.monotonic() + within
            while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
                assert time.monotonic() < deadline, f"{topic} not read to its end in {within} s"
                batch = await consumer.getmany(*tps, timeout_ms=500)
                records += [m for ms in batch.values() for m in ms]
            return records
        finally:
            await consumer.stop()

    async def command(self, kind: str, tenant_id: str, *, follow: float = 120,
                      **fields: Any) -> CommandResult:
        command = build_command(kind, tenant_id, operator="e2e", **fields)
        result = await send_and_follow(self.settings, command, follow=follow,
                                       out=io.StringIO())
        assert result is not None, f"no answer to {command}:\n{self.worker.log_tail()}"
        return result

    def activation(self, tenant: DevTenant, api_key: str, **fields: Any) -> dict[str, Any]:
        """The fields of `activate`; the key encrypted for the tenant, as the CLI sends it."""
        return activation_fields(self.settings, tenant, api_key, **fields)

    def restart_worker(self, *, kill: bool) -> None:
        if kill:
            self.worker.kill()
        else:
            self.worker.stop()
        self.worker = WorkerProcess(self.env, self.workdir / "worker.log")
        self.worker.start()

    def stop(self) -> None:
        self.worker.stop()
        self.double.stop_thread()
