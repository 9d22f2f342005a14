"""The probe of a tenant whose key broke or whose portal went down: does it answer again?"""

from __future__ import annotations

import logging
from typing import Protocol

from pipeline.crm.client import RetailCRMClient
from pipeline.delivery.health import TenantHealth

__all__ = ["probe"]

# The logger the lanes have always logged under (pipeline/delivery/lanes.py, which makes them).
log = logging.getLogger("pipeline.delivery.lanes")


class Recovery(Protocol):
    """What the probe uses of the lane's hooks (`tenantlane.LaneHooks`)."""

    async def recover_outage(self, tenant_id: str) -> bool: ...


async def probe(*, tenant_id: str, client: RetailCRMClient, health: TenantHealth,
                hooks: Recovery | None, outage: bool) -> None:
    """One question (/api/credentials). A portal found back starts the replay of what its
    outage parked; then the tenant's health recovers (its lane resumes delivery)."""
    try:
        await client.credentials()
    except Exception:  # noqa: BLE001 - still broken, whatever the answer
        return
    if outage and hooks is not None and not await hooks.recover_outage(tenant_id):
        return  # the replay of what it parked could not start: stay parked, try again
    if not health.recovered():
        return  # deactivated meanwhile: a probe does not re-activate
    log.warning("tenant %s: %s", tenant_id, "the portal answers again; resuming "
                "delivery, and what was parked meanwhile is replayed" if outage else
                "the key answers again; resuming delivery (parked events wait for a replay)")
