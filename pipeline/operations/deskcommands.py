"""The control desk's commands that ask retailCRM nothing: rekey, replay and status."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from pipeline.delivery.intake import TenantDirectory, describe_invalid
from pipeline.delivery.lanes import LaneRegistry
from pipeline.delivery.tenantstate import StateStore
from pipeline.operations.activation import Refused
from pipeline.operations.window import ReplayWindow, calendar_days_window
from pipeline.signing import RecordRefused, RecordWriter
from schemas.control import RekeyCommand, ReplayCommand, StatusCommand

__all__ = ["DeskCommands", "StartReplay"]

StartReplay = Callable[[str, str, ReplayWindow], Awaitable[None]]


class DeskCommands:
    """Part of `ControlDesk` (control.py), which sets these attributes and adds the commands
    that reach the CRM: activate, deactivate and the employee commands."""

    directory: TenantDirectory
    records: RecordWriter
    states: StateStore
    lanes: LaneRegistry
    start_replay: StartReplay
    clock: Callable[[], datetime]

    def _configured(self, tenant_id: str) -> bool:
        """An integration is stored for the tenant (whether or not this worker can open it)."""
        return bool(self.records.integrations.get(tenant_id))

    async def _rekey(self, cmd: RekeyCommand) -> tuple[str, str, dict[str, Any]]:
        if not self.records.integrations.get(cmd.tenant_id):
            raise Refused("no integration is configured for this tenant")
        try:
            data = await self.records.rekey(cmd.tenant_id)
        except RecordRefused as exc:
            raise Refused(f"the stored integration cannot be used: {exc}") from None
        except ValidationError as exc:
            raise Refused(f"a stored record cannot be used: {describe_invalid(exc)}") from None
        return "done", f"re-encrypted under {data['kid']} (was {data['previous_kid']})", data

    async def _replay(self, cmd: ReplayCommand) -> tuple[str, str, dict[str, Any]]:
        config = self.directory.config(cmd.tenant_id)
        if config is None:
            raise Refused("no integration is configured for this tenant")
        state = self.states.get(cmd.tenant_id)
        if state.replay is not None and not state.replay.done:
            raise Refused(f"a replay is already running ({state.replay.command_id})")
        now = self.clock()
        default = calendar_days_window(now, config.zone)
        try:
            window = ReplayWindow(cmd.since or default.start, cmd.until or default.end)
        except ValueError as exc:
            raise Refused(str(exc)) from None
        await self.start_replay(cmd.tenant_id, cmd.command_id, window)
        return "accepted", "replay started", {"window": window.as_dict()}

    def _status(self, cmd: StatusCommand) -> tuple[str, str, dict[str, Any]]:
        config = self.directory.config(cmd.tenant_id)
        state = self.states.get(cmd.tenant_id)
        lane = self.lanes.lanes.get(cmd.tenant_id)
        data = state.model_dump(mode="json", exclude={"commands", "seen_commands"})
        if not self._configured(cmd.tenant_id):
            # A tenant's state defaults to active; with no integration it is none of them.
            data["state"] = "unknown"
        if config is not None:
            data["config"] = {k: v for k, v in config.model_dump(mode="json").items()
                              if k != "api_key"}
        data["key_id"] = self.records.stored_kid(cmd.tenant_id)
        data["lane_backlog"] = lane.backlog if lane else 0
        data["mapped_employees"] = len(self.directory.stored_mapping(cmd.tenant_id).employees)
        data["fallbacks"] = self.directory.fallbacks.get(cmd.tenant_id, {})
        roster = self.directory.roster(cmd.tenant_id)
        data["roster"] = {"synced_at": roster.synced_at.isoformat() if roster else None,
                          "managers": sorted(roster.managers) if roster else []}
        if data["state"] == "unknown":
            return "done", "unknown (no integration configured)", data
        return "done", state.state, data

