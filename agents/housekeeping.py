"""Housekeeping timers: sync_rosters (each owned tenant's CRM managers), evict_idle_lanes
(and the tenants' parsed configs), prune_ledger and return_free_heap; and freeze_startup_heap
once."""

from __future__ import annotations

import asyncio
import logging
import time

from pipeline.app import app, settings
from pipeline.crm import errors as e
from pipeline.delivery.health import publish_gauges
from pipeline.heap import freeze_long_lived
from pipeline.observability.metrics import HEAP_RETURNED
from pipeline.runtime import directory, heap, lanes, ledger, staff, states
from pipeline.streams.tables import tenant_partition

log = logging.getLogger(__name__)


@app.timer(interval=settings.roster_sync_seconds)  # type: ignore[untyped-decorator]
async def sync_rosters() -> None:
    try:
        await _sync_rosters()
    except Exception:
        log.exception("roster sync failed; trying again on the next tick")


async def _sync_rosters() -> None:
    owned = {tp.partition for tp in app.assignor.assigned_actives()
             if tp.topic == settings.topics.calls}
    for tenant_id in sorted(set(directory.configured())):
        if tenant_partition(tenant_id, settings.topics.partitions) not in owned:
            continue
        # Opened for the sync only: the configs kept are those of tenants with calls.
        config = directory.config(tenant_id, keep=False)
        if config is None or lanes.health(tenant_id).stopped:
            continue
        lane = lanes.lanes.get(tenant_id)  # no lane is made for a sync: memory follows calls
        # The pooled client of the portal and key: the sync shares the tenant's request budget.
        client = lane.steps.client if lane is not None else lanes.clients.get(config)
        try:
            roster = await staff.sync(config, client)
        except e.RetailCRMError as exc:
            log.warning("roster sync of %s failed: %s", tenant_id, exc)
            continue
        except Exception:
            log.exception("roster sync of %s failed", tenant_id)
            continue
        finally:
            # Nor are connections kept for a sync (10,000 portals would hold 10,000 sockets),
            # unless the tenant's calls began to use them meanwhile.
            if tenant_id not in lanes.lanes:
                await lanes.transport.release(client.base_url)
        log.info("roster of %s: %d managers", tenant_id, len(roster.managers))


@app.timer(interval=60.0)  # type: ignore[untyped-decorator]
async def evict_idle_lanes() -> None:
    """Lanes, clients and parsed configs and mappings (decrypted keys too) of tenants quiet
    for CALLSYNC_LANE_IDLE_SECONDS are let go."""
    try:
        evicted = await lanes.evict_idle(settings.lane_idle_seconds)
        forgotten = directory.evict_idle(settings.lane_idle_seconds, keep=lanes.lanes)
    except Exception:
        log.exception("evicting idle lanes failed")
        return
    if evicted or forgotten:
        log.info("let %d idle tenant lanes and %d tenants' parsed configs go (%d lanes still "
                 "open)", evicted, forgotten, len(lanes.lanes))


@app.timer(interval=10.0)  # type: ignore[untyped-decorator]
async def return_free_heap() -> None:
    """The heap a burst freed goes back to the system (pipeline/heap.py). In a thread: the
    trim walks the heap with the GIL released, and the loop goes on meanwhile."""
    try:
        given = await asyncio.to_thread(heap.tick)
    except Exception:
        log.exception("returning the free heap failed")
        return
    if given:
        HEAP_RETURNED.inc(given)
        log.debug("returned %.1f MiB of free heap to the system", given / 2**20)


@app.task  # type: ignore[untyped-decorator]
async def freeze_startup_heap() -> None:
    """What a worker holds once ready, it holds for good: the collector stops walking it
    (pipeline/heap.py)."""
    recovery = app.tables.recovery  # type: ignore[attr-defined]
    await recovery.completed.wait()  # the tables loaded
    frozen = freeze_long_lived()
    log.info("%d objects alive at start-up left out of garbage collection", frozen)
    loop = type(asyncio.get_running_loop())
    log.info("running on %s.%s (CALLSYNC_EVENT_LOOP)", loop.__module__, loop.__qualname__)


@app.timer(interval=3600.0)  # type: ignore[untyped-decorator]
async def prune_ledger() -> None:
    """The ledger keeps a call one day longer than the call topic keeps its event."""
    keep_days = settings.topics.calls_retention_days + 1
    try:
        pruned = ledger.prune(time.time() - keep_days * 86_400)
    except Exception:
        log.exception("pruning the ledger failed")
        return
    if pruned:
        log.info("pruned %d ledger entries older than %d days", pruned, keep_days)


@app.timer(interval=15.0)  # type: ignore[untyped-decorator]
async def publish_tenant_states() -> None:
    """The state gauges follow the table, not only the lanes' changes: a broken tenant stays on
    the alert after a restart or a failover, and tenants that moved away leave this worker's."""
    try:
        owned = {tp.partition for tp in app.assignor.assigned_actives()
                 if tp.topic == settings.topics.calls}
        publish_gauges(states, lambda tenant_id: tenant_partition(
            tenant_id, settings.topics.partitions) in owned)
    except Exception:
        log.exception("publishing the tenant states failed")
