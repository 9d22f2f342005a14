"""The employee commands and the roster sync, on the worker that owns the tenant."""

from __future__ import annotations

import logging
from collections.abc import Callable, MutableMapping
from datetime import UTC, datetime
from typing import Any

from pipeline.crm import errors as e
from pipeline.crm.client import RetailCRMClient
from pipeline.delivery.employees import Roster, fetch_roster, link_refusal, roster_summary
from pipeline.delivery.intake import TenantDirectory
from pipeline.delivery.lanes import ClientFor
from pipeline.observability.metrics import ROSTER_SYNCS
from pipeline.signing import RecordWriter
from schemas.control import EmployeesCommand, LinkCommand, SeniorCommand, UnlinkCommand
from schemas.integration import IntegrationConfig
from schemas.mapping import EmployeeLink, EmployeeMapping

__all__ = ["Staff", "StaffRefused"]

log = logging.getLogger(__name__)
StaffCommand = LinkCommand | UnlinkCommand | SeniorCommand | EmployeesCommand


class StaffRefused(Exception):
    pass


class Staff:
    def __init__(self, *, directory: TenantDirectory, records: RecordWriter,
                 rosters: MutableMapping[str, Any],
                 client_for: ClientFor,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.directory = directory
        self.records = records
        self.rosters = rosters
        self.client_for = client_for
        self.clock = clock

    async def sync(self, config: IntegrationConfig, client: RetailCRMClient | None = None
                   ) -> Roster:
        """Fetch the managers now and keep them; the calls' mapping follows at once."""
        try:
            if client is not None:
                roster = await fetch_roster(client, now=self.clock())
            else:
                async with self.client_for(config) as own:
                    roster = await fetch_roster(own, now=self.clock())
        except e.RetailCRMError:
            ROSTER_SYNCS.labels("failed").inc()
            raise
        self.rosters[config.tenant_id] = roster.model_dump_json().encode()
        ROSTER_SYNCS.labels("ok").inc()
        return roster

    async def handle(self, command: StaffCommand, config: IntegrationConfig | None,
                     push_module: Callable[[IntegrationConfig, EmployeeMapping],
                                           Any]) -> tuple[str, str, dict[str, Any]]:
        if config is None:
            raise StaffRefused("no integration is configured for this tenant")
        mapping = self.directory.stored_mapping(command.tenant_id)
        if isinstance(command, EmployeesCommand):
            roster = await self.sync(config)
            return "done", f"{len(mapping.employees)} linked, {len(roster.managers)} managers", {
                "mapping": mapping.model_dump(mode="json"), "roster": roster_summary(roster),
                "fallbacks": self.directory.fallbacks.get(command.tenant_id, {})}
        if isinstance(command, UnlinkCommand):
            if command.employee_id not in mapping.employees:
                raise StaffRefused(f"employee {command.employee_id} is not linked")
            employees = {k: v for k, v in mapping.employees.items() if k != command.employee_id}
            updated = mapping.model_copy(update={"employees": employees})
        else:
            roster = await self.sync(config)
            refusal = link_refusal(roster, command.crm_user_id)
            if refusal is not None:
                raise StaffRefused(refusal)
            if isinstance(command, LinkCommand):
                employees = {**mapping.employees, command.employee_id: EmployeeLink(
                    crm_user_id=command.crm_user_id, extension=command.extension)}
                updated = mapping.model_copy(update={"employees": employees})
            else:
                updated = mapping.model_copy(update={"senior_manager_id": command.crm_user_id})
        await self.records.write_mapping(updated)  # signed, to the table and the topic
        await push_module(config, updated)
        return "done", f"{command.type} saved", {"mapping": updated.model_dump(mode="json")}
