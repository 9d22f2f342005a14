"""The tenants' delivery lanes (tenantlane.py) by tenant, and their pooled CRM clients."""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import Protocol

import httpx

from pipeline.config import CRMSettings
from pipeline.crm.client import RetailCRMClient
from pipeline.crm.ratelimit import Pacing
from pipeline.crm.transport import SharedTransport
from pipeline.delivery.health import TenantHealth
from pipeline.delivery.ledger import Ledger
from pipeline.delivery.outlets import Outlets
from pipeline.delivery.steps import Steps
from pipeline.delivery.tenantlane import LaneHooks, TenantLane
from pipeline.delivery.tenantstate import StateStore, key_fingerprint
from pipeline.delivery.work import SourceRef, Work
from pipeline.observability.metrics import observe_crm_request
from schemas.integration import IntegrationConfig

__all__ = ["ClientFor", "ClientPool", "LaneHooks", "LaneRegistry", "Recovery", "TenantLane"]


class Recovery(Protocol):
    """The replays, as the lanes see them."""

    def recovering(self, tenant_id: str) -> bool: ...

    def hold_back(self, tenant_id: str, source: SourceRef) -> bool: ...

    async def start_outage_replay(self, tenant_id: str) -> bool: ...


def _portal_and_key(config: IntegrationConfig) -> tuple[str, str]:
    """The pool's key for a client: a new portal or key, a new client."""
    return str(config.portal_url), config.api_key.get_secret_value()


def _fingerprint(config: IntegrationConfig) -> str:
    return key_fingerprint(config.api_key.get_secret_value())


# Gives the client for a tenant's portal and key, for `async with`.
ClientFor = Callable[[IntegrationConfig], AbstractAsyncContextManager[RetailCRMClient]]


class ClientPool:
    """One client per portal and key: retailCRM's budget is per key, so every request made
    with a key — deliveries, commands, roster syncs — goes through the same pacing."""

    def __init__(self, factory: Callable[[IntegrationConfig], RetailCRMClient]) -> None:
        self._factory = factory
        self._clients: dict[tuple[str, str], RetailCRMClient] = {}
        self._used: dict[tuple[str, str], float] = {}  # when each was last handed out

    def get(self, config: IntegrationConfig) -> RetailCRMClient:
        key = _portal_and_key(config)
        client = self._clients.get(key)
        if client is None:
            client = self._clients[key] = self._factory(config)
        self._used[key] = time.monotonic()
        return client

    def __len__(self) -> int:
        return len(self._clients)

    def portals(self) -> set[str]:
        return {portal for portal, _ in self._clients}

    async def evict_idle(self, after: float, *, keep: set[int]) -> int:
        """Close clients nobody asked for in `after` seconds, but those in `keep` (ids of
        clients lanes hold). Their pacing is long over: a later client starts afresh."""
        now = time.monotonic()
        stale = [key for key, client in self._clients.items()
                 if id(client) not in keep and now - self._used.get(key, now) > after]
        for key in stale:
            client = self._clients.pop(key)
            self._used.pop(key, None)
            await client.aclose()
        return len(stale)

    @contextlib.asynccontextmanager
    async def borrow(self, config: IntegrationConfig) -> AsyncIterator[RetailCRMClient]:
        """For `async with`: the pooled client, left open for the others."""
        yield self.get(config)

    async def close(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()



class LaneRegistry:
    """Lanes by tenant; a changed integration (new key, new portal) gets a fresh client. The
    tenants' health is in the tenant-state table (in memory without one), never in a lane."""

    def __init__(self, *, settings: CRMSettings, ledger: Ledger, outlets: Outlets,
                 states: StateStore | None = None,
                 transport: httpx.AsyncBaseTransport | None = None, buffer: int = 2000,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 probe_interval: float = 300.0, outage_probe_interval: float = 30.0) -> None:
        self.settings = settings
        self.ledger = ledger
        self.outlets = outlets
        self.states = states if states is not None else StateStore({})
        self.probe_interval = probe_interval
        self.outage_probe_interval = outage_probe_interval
        # One TLS context for every tenant's client, a pool per portal (pipeline/crm/transport.py).
        self.transport = SharedTransport(transport)
        self.buffer = buffer
        self.clock = clock
        self.lanes: dict[str, TenantLane] = {}
        self.recovery: Recovery | None = None  # the replays, once the worker has them
        self.clients = ClientPool(self._new_client)
        # One pacing per portal, whatever keys its tenants use (retailCRM counts per IP too).
        self._pacing: dict[str, Pacing] = {}
        # One generator for every lane's backoff jitter (a Random of its own is 2.5 KB a lane).
        self._jitter = random.Random()  # noqa: S311 - jitter, not cryptography

    def _new_client(self, config: IntegrationConfig) -> RetailCRMClient:
        portal = str(config.portal_url)
        pacing = self._pacing.get(portal)
        if pacing is None:
            pacing = self._pacing[portal] = Pacing(self.settings.general_rps,
                                                   self.settings.telephony_rps)
        return RetailCRMClient(
            base_url=portal, api_key=config.api_key, transport=self.transport,
            timeout=self.settings.timeout_seconds, pacing=pacing, observer=observe_crm_request)

    def health(self, tenant_id: str) -> TenantHealth:
        return TenantHealth(self.states, tenant_id, clock=self.clock)

    def lane_for(self, config: IntegrationConfig) -> TenantLane:
        """A restarted worker's new lane reads the tenant's stored health: a broken key stays
        broken without being called again, and its denied methods stay denied."""
        lane = self.lanes.get(config.tenant_id)
        if lane is None:
            steps = Steps(client=self.clients.get(config), ledger=self.ledger,
                          settings=self.settings, health=self.health(config.tenant_id),
                          clock=self.clock, rand=self._jitter)
            lane = TenantLane(tenant_id=config.tenant_id, steps=steps, outlets=self.outlets,
                              linger=self.settings.upload_linger_seconds, buffer=self.buffer,
                              hooks=self, probe_interval=self.probe_interval,
                              outage_probe_interval=self.outage_probe_interval)
            self.lanes[config.tenant_id] = lane
            lane.health.uses_key(_fingerprint(config))  # another key's state is forgotten
            lane.start()
        elif self.clients.get(config) is not lane.steps.client:
            self._switch_client(lane, config)
            lane.health.new_key(_fingerprint(config))
        lane.diagnosis.config = config  # its option as the tenant has it now
        return lane

    def _switch_client(self, lane: TenantLane, config: IntegrationConfig) -> None:
        lane.steps.client = self.clients.get(config)  # the old one stays pooled (other users)
        lane.steps.known_callers.clear()

    def reset(self, config: IntegrationConfig) -> TenantLane:
        """After an activation (health.py's `activated`): a fresh client for the lane."""
        lane = self.lane_for(config)
        self._switch_client(lane, config)
        return lane

    def held_back(self, tenant_id: str, work: Work) -> bool:
        recovery = self.recovery
        return recovery is not None and recovery.recovering(tenant_id) and \
            recovery.hold_back(tenant_id, work.source)

    async def recover_outage(self, tenant_id: str) -> bool:
        return self.recovery is None or await self.recovery.start_outage_replay(tenant_id)

    def drop_stale(self) -> int:
        return sum(lane.drop_stale() for lane in self.lanes.values())

    async def evict_idle(self, after: float) -> int:
        """Forget the lanes (and clients) of tenants that sent nothing for `after` seconds:
        memory follows the tenants calling now, not every tenant that ever called. A lane
        with anything to do — queued or held events, a broken key or a portal to probe, a
        replay feeding it — stays; a new event makes a fresh lane, its state from the
        tenant-state table."""
        now = time.monotonic()
        recovering = self.recovery.recovering if self.recovery is not None else \
            (lambda tenant_id: False)
        idle = [tenant_id for tenant_id, lane in self.lanes.items()
                if lane.idle_since(now) > after and not recovering(tenant_id)]
        lanes = []
        for tenant_id in idle:  # out of the registry before any await: nothing is submitted
            lanes.append(self.lanes.pop(tenant_id))
        for lane in lanes:
            await lane.stop()
        in_use = {id(lane.steps.client) for lane in self.lanes.values()}
        await self.clients.evict_idle(after, keep=in_use)
        portals = self.clients.portals()
        for portal in [p for p in self._pacing if p not in portals]:
            del self._pacing[portal]  # its last client went: its pacing is long over
        await self.transport.sweep()  # the connection pools of portals nobody asks any more
        return len(lanes)

    async def stop(self) -> None:
        for lane in self.lanes.values():
            await lane.stop()
        await self.clients.close()
        await self.transport.close()
