"""Support for tests of tenant lanes against the retailCRM double: a ledger that keeps only what
was synced when the worker dies, the crash itself, quick retries, and the telephony module."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pipeline.config import CRMSettings
from pipeline.crm.client import RetailCRMClient
from pipeline.delivery.health import TenantHealth
from pipeline.delivery.ledger import Ledger, MemoryLedger
from pipeline.delivery.outlets import Outlets
from pipeline.delivery.planning import plan_call
from pipeline.delivery.steps import Steps
from pipeline.delivery.tenantlane import TenantLane
from pipeline.delivery.tenantstate import StateStore
from pipeline.delivery.work import SourceRef, Work
from schemas import CallEvent, EmployeeMapping, IntegrationConfig
from schemas.crm import IntegrationModulePayload, Integrations, TelephonyConfiguration

__all__ = ["QUICK", "Crash", "CrashableLedger", "enable_telephony", "quick_lane", "work_of"]

# Retries that give up within a test's patience.
QUICK = CRMSettings(max_attempts=4, backoff_base_seconds=0.01, backoff_max_seconds=0.05,
                    upload_linger_seconds=0.05)


class CrashableLedger(MemoryLedger):
    """Keeps only what was synced when the worker dies, as the changelog would."""

    def __init__(self) -> None:
        super().__init__()
        self.durable: dict[str, Any] = {}

    async def sync(self, *entries: tuple[str, str]) -> None:
        # What it names is written, and durable with all that was written for its tenants (one
        # changelog partition each); other tenants' writes wait for their own sync or commit.
        await super().sync(*entries)
        tenants = {tenant_id for tenant_id, _ in entries}

        def theirs(key: str) -> bool:
            return key.split("|", 1)[0] in tenants

        self.durable = {**{key: value for key, value in self.durable.items() if not theirs(key)},
                        **{key: copy.deepcopy(value) for key, value in self.data.items()
                           if theirs(key)}}

    def crash(self) -> None:
        self._pending.clear()
        self.data.clear()
        self.data.update(copy.deepcopy(self.durable))


class Crash(BaseException):
    """The worker dies here (SIGKILL): nothing catches it."""


async def enable_telephony(client: RetailCRMClient) -> None:
    """The portal's telephony module, active: calls can be uploaded and pop-ups shown."""
    await client.edit_integration_module(IntegrationModulePayload(
        code="ringostat-rs", integrationCode="ringostat", active=True,
        integrations=Integrations(telephony=TelephonyConfiguration())))


def quick_lane(cfg: IntegrationConfig, ledger: Ledger, outlets: Outlets, *,
               settings: CRMSettings = QUICK) -> tuple[RetailCRMClient, Steps, TenantLane]:
    """A client of `cfg`'s portal, its steps and a tenant lane "acme" that lingers 50 ms; the
    tenant's health in a tenant-state table of its own, in memory."""
    client = RetailCRMClient(base_url=cfg.portal_url.unicode_string(), api_key=cfg.api_key)
    steps = Steps(client=client, ledger=ledger, settings=settings,
                  health=TenantHealth(StateStore({}), "acme"), clock=lambda: datetime.now(UTC))
    lane = TenantLane(tenant_id="acme", steps=steps, outlets=outlets, linger=0.05, buffer=100)
    return client, steps, lane


def work_of(event: CallEvent, cfg: IntegrationConfig, mapping: EmployeeMapping, offset: int = 0,
            *, ack: Callable[[], object] = lambda: None, raw: bytes | None = None) -> Work:
    """The event as a lane's work item, read from `calls[0]` at `offset`, planned for `cfg`."""
    return Work(event=event, plan=plan_call(event, cfg, mapping),
                raw=event.model_dump_json().encode() if raw is None else raw, key=b"acme",
                source=SourceRef("calls", 0, offset), ack=ack)
