"""A whole callsync on this machine: portals on the double, tenants, a worker process, waits."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import (
    CoordinatorLoadInProgressError,
    GroupCoordinatorNotAvailableError,
    NotCoordinatorForGroupError,
)

from pipeline.config import Settings
from pipeline.crm.client import RetailCRMClient
from pipeline.crm.transport import SharedTransport
from pipeline.devtools.crmdouble.admin import KeySpec, PortalSpec, UserSpec, seed_portal
from pipeline.devtools.crmdouble.state import DoubleState
from pipeline.devtools.samples import SampleTenant
from pipeline.operations.operator import seal_api_key
from pipeline.signing import record_key, seal_record
from pipeline.streams.producing import publish
from pipeline.topics import ensure_topics
from schemas.crm import (
    AdditionalCode,
    IntegrationModulePayload,
    Integrations,
    TelephonyConfiguration,
)
from schemas.integration import INTEGRATION_CODE, IntegrationConfig
from schemas.mapping import EmployeeLink, EmployeeMapping

__all__ = ["DevTenant", "WorkerProcess", "activation_fields", "committed_everything",
           "enable_telephony", "publish_tenants", "seed_tenant", "settings_from", "worker_env"]

USER_ID_BASE = 100


@dataclass(frozen=True)
class DevTenant:
    sample: SampleTenant
    config: IntegrationConfig
    mapping: EmployeeMapping
    senior_manager_id: int


def seed_tenant(state: DoubleState, double_url: str, sample: SampleTenant,
                index: int) -> DevTenant:
    """A portal named after the tenant: a manager per employee but the last (left unmapped),
    a senior manager, a director and an inactive manager; a key that reaches every method."""
    base = USER_ID_BASE * (index + 1)
    mapped = sample.employees[:-1]
    users = [UserSpec(id=base + n, firstName=f"Manager {emp}", email=f"{emp}@example.com")
             for n, (emp, _) in enumerate(mapped, start=1)]
    senior = base + 50
    users += [UserSpec(id=senior, firstName="Senior", email=f"senior@{sample.tenant_id}.example"),
              UserSpec(id=base + 60, firstName="Director", groups=["director"]),
              UserSpec(id=base + 70, firstName="Gone", active=False)]
    key = f"key-{sample.tenant_id}-{index}"
    seed_portal(state, PortalSpec(name=sample.tenant_id, timezone=sample.timezone,
                                  keys=[KeySpec(key=key, label=sample.tenant_id)], users=users))
    config = IntegrationConfig.model_validate({
        "tenant_id": sample.tenant_id, "portal_url": f"{double_url}/{sample.tenant_id}",
        "admin_email": f"admin@{sample.tenant_id}.example.com", "site_code": "main",
        "api_key": key, "timezone": sample.timezone,
        "module_code": f"ringostat-{sample.tenant_id}"})
    mapping = EmployeeMapping(
        tenant_id=sample.tenant_id, senior_manager_id=senior,
        employees={emp: EmployeeLink(crm_user_id=base + n, extension=ext)
                   for n, (emp, ext) in enumerate(mapped, start=1)})
    return DevTenant(sample=sample, config=config, mapping=mapping, senior_manager_id=senior)


def activation_fields(settings: Settings, tenant: DevTenant, api_key: str,
                      **fields: Any) -> dict[str, Any]:
    """The fields of `activate` for a seeded tenant; the key encrypted for it, as the CLI
    sends it."""
    config = tenant.config
    return {"portal_url": str(config.portal_url), "admin_email": config.admin_email,
            "site_code": config.site_code,
            "api_key": seal_api_key(settings, config.tenant_id, api_key),
            "timezone": config.timezone, "module_code": config.module_code, **fields}


async def enable_telephony(tenant: DevTenant,
                           transport: httpx.AsyncBaseTransport | None = None) -> None:
    """What activation does in the CRM: the telephony module, active, with the extensions."""
    config = tenant.config
    async with RetailCRMClient(base_url=str(config.portal_url), api_key=config.api_key,
                               transport=transport) as crm:
        await crm.edit_integration_module(IntegrationModulePayload(
            code=config.module_code, integrationCode=INTEGRATION_CODE, active=True,
            name="Ringostat",
            integrations=Integrations(telephony=TelephonyConfiguration(
                inputEventSupported=True, outputEventSupported=True, hangupEventSupported=True,
                additionalCodes=[AdditionalCode(userId=link.crm_user_id, code=link.extension)
                                 for link in tenant.mapping.employees.values()
                                 if link.extension]))))


async def publish_tenants(devs: list[DevTenant], bootstrap: str, settings: Settings) -> None:
    """Topics created, telephony modules on, configs and mappings on their topics as the
    control desk writes them: signed with the operator key, the API keys encrypted."""
    keyring = settings.secrets.keyring()
    if settings.operator_key is None or keyring is None:
        raise ValueError("signed tenant records need CALLSYNC_OPERATOR_KEY and "
                         "CALLSYNC_SECRETS__KEYS (worker_env sets both)")
    key = record_key(settings.operator_key.get_secret_value().encode())
    now = datetime.now(UTC)
    await ensure_topics(settings)
    # One TLS context for every portal: a client's own costs about 30 ms, which was most of
    # setting up 10,000 tenants. Each portal's connection is closed once it is set up: kept,
    # 10,000 of them (and the double's ends, in this process) ran out of file descriptors.
    transport = SharedTransport(idle_seconds=0.0)
    try:
        for dev in devs:
            await enable_telephony(dev, transport)
            await transport.sweep()
    finally:
        await transport.close()
    await publish(bootstrap, settings.topics.integrations, [
        (d.config.tenant_id.encode(), json.dumps(seal_record(
            "integration", d.config.to_stored(keyring), key, signed_at=now)).encode(), None)
        for d in devs])
    await publish(bootstrap, settings.topics.mappings, [
        (d.mapping.tenant_id.encode(), json.dumps(seal_record(
            "mapping", d.mapping.model_dump(mode="json"), key, signed_at=now)).encode(), None)
        for d in devs])


def worker_env(*, bootstrap: str, app_id: str, metrics_port: int, data_dir: str,
               partitions: int = 4, topic_prefix: str | None = None,
               extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLSYNC_")}
    prefix = topic_prefix or app_id
    env.update({
        "CALLSYNC_KAFKA__BOOTSTRAP_SERVERS": bootstrap, "CALLSYNC_APP_ID": app_id,
        "CALLSYNC_METRICS_PORT": str(metrics_port), "CALLSYNC_METRICS_BIND": "127.0.0.1",
        "CALLSYNC_DATA_DIR": data_dir, "CALLSYNC_TOPICS__PARTITIONS": str(partitions),
        **{f"CALLSYNC_TOPICS__{name.upper()}": f"{prefix}.{name.replace('_', '-')}"
           for name in ("calls", "integrations", "mappings", "invalid", "dead_letter",
                        "control", "results")},
        # Workers refuse to start without both: fresh ones for this stack, unless `extra` names
        # its own.
        "CALLSYNC_OPERATOR_KEY": secrets.token_urlsafe(32),
        "CALLSYNC_SECRETS__KEYS": f"dev:{base64.b64encode(secrets.token_bytes(32)).decode()}",
    })
    env.update(extra or {})
    return env


def settings_from(env: dict[str, str]) -> Settings:
    """The settings a worker started with `env` will read."""
    saved = dict(os.environ)
    try:
        os.environ.clear()
        os.environ.update(env)
        return Settings()
    finally:
        os.environ.clear()
        os.environ.update(saved)


class WorkerProcess:
    """`python -m pipeline worker` as a child process with its own log file."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "pipeline", "worker", "--loglevel", "info"],
                env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self, timeout: float = 60) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def kill(self) -> None:
        """SIGKILL: a crash, with nothing flushed or committed on the way out."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 60) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


# What the broker answers while the group's coordinator is being set up (its offsets topic
# made, its partition loaded) or has just moved.
_COORDINATOR_NOT_YET = (GroupCoordinatorNotAvailableError, CoordinatorLoadInProgressError,
                        NotCoordinatorForGroupError)


async def committed_everything(bootstrap: str, group: str, topic: str, *,
                               within: float = 120.0, worker: WorkerProcess | None = None
                               ) -> bool:
    """True once the group's committed offsets reach the end of every partition of `topic`."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await consumer.start()
    await admin.start()
    try:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if worker is not None and not worker.alive():
                raise RuntimeError("the worker died:\n" + worker.log_tail())
            partitions = consumer.partitions_for_topic(topic) or set()
            if not partitions:
                await consumer._client.force_metadata_update()
                await asyncio.sleep(0.5)
                continue
            tps = [TopicPartition(topic, p) for p in partitions]
            ends = await consumer.end_offsets(tps)
            try:
                committed = await admin.list_consumer_group_offsets(group, partitions=tps)
            except _COORDINATOR_NOT_YET:  # a fresh broker, a group just made: not yet
                await asyncio.sleep(0.5)
                continue
            if all((committed.get(tp) and committed[tp].offset >= ends[tp]) or ends[tp] == 0
                   for tp in tps):
                return True
            await asyncio.sleep(0.5)
        return False
    finally:
        await consumer.stop()
        await admin.close()
