"""The tenant-state table: each tenant's health (written by health.py), replay and commands."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, MutableMapping
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ReplayProgress", "StateStore", "TenantState", "key_fingerprint"]

KEEP_RESULTS = 100  # results kept for "already handled" answers; ids are kept longer


def key_fingerprint(api_key: str) -> str:
    """Tells keys apart without keeping them: a truncated SHA-256, safe to log and show."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:12]


class ReplayProgress(BaseModel):
    model_config = ConfigDict(extra="forbid")

    command_id: str
    window: dict[str, str]
    ends: dict[str, int]  # partition -> end offset when the replay began
    next: dict[str, int]  # partition -> first offset not yet settled
    # partition -> where the replay reads to: past `ends` when live events of the tenant were
    # held back for it (they wait so that the replay keeps the tenant's order).
    reach: dict[str, int] = Field(default_factory=dict)
    scanned: int = 0
    submitted: int = 0
    settled: int = 0
    done: bool = False
    started_at: datetime
    finished_at: datetime | None = None

    def reach_of(self, partition: str) -> int:
        return max(self.ends.get(partition, 0), self.reach.get(partition, 0))

    @property
    def remaining(self) -> int:
        return sum(max(0, self.reach_of(p) - self.next.get(p, 0)) for p in self.ends)


class TenantState(BaseModel):
    """The stored record. Its health fields (state to settled_at) are read and written only
    through pipeline/delivery/health.py, which keeps their format as it always was."""

    model_config = ConfigDict(extra="forbid")

    state: Literal["active", "broken", "deactivated"] = "active"
    reason: str = ""
    method: str = ""
    since: datetime | None = None
    key_fingerprint: str = ""
    denied_methods: list[str] = Field(default_factory=list)
    parked: int = Field(default=0, description="Dead-lettered since the last settlement")
    outage_offsets: dict[str, int] = Field(
        default_factory=dict, description="Call-topic partition -> first offset parked while "
        "the portal was down; replayed by itself once the portal answers again")
    settled_at: datetime | None = None
    replay: ReplayProgress | None = None
    commands: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Recent command ids and their final results")
    seen_commands: dict[str, datetime] = Field(
        default_factory=dict, description="Every command id carried out within the acceptance "
        "window -> when it leaves it (a replay before then is answered, not carried out)")


class StateStore:
    """Over a tenant-partitioned table (the state gauges follow health.py's changes)."""

    def __init__(self, table: MutableMapping[str, Any]) -> None:
        self._table = table

    def get(self, tenant_id: str) -> TenantState:
        stored = self._table.get(tenant_id)
        return TenantState.model_validate(stored) if stored else TenantState()

    def stored(self, tenant_id: str) -> dict[str, Any] | None:
        """The raw stored state, for hot paths that need one field without parsing it all."""
        stored = self._table.get(tenant_id)
        return stored if isinstance(stored, dict) else None

    def put(self, tenant_id: str, state: TenantState) -> None:
        self._table[tenant_id] = state.model_dump(mode="json")

    def update(self, tenant_id: str, **changes: Any) -> TenantState:
        state = self.get(tenant_id).model_copy(update=changes)
        self.put(tenant_id, state)
        return state

    def handled(self, tenant_id: str, command_id: str) -> dict[str, Any] | None:
        """The remembered result of a command carried out before ({} when only its id is still
        kept), or None for a new one."""
        state = self.get(tenant_id)
        if command_id in state.commands:
            return state.commands[command_id]
        return {} if command_id in state.seen_commands else None

    def remember(self, tenant_id: str, command_id: str, result: dict[str, Any], *,
                 until: datetime, now: datetime) -> None:
        """Keep the id until the command could no longer be accepted (pruned after), never
        evicted by count; keep the results of the last KEEP_RESULTS."""
        state = self.get(tenant_id)
        seen = {k: v for k, v in state.seen_commands.items() if v > now}
        seen[command_id] = until
        commands = dict(list(state.commands.items())[-(KEEP_RESULTS - 1):])
        commands[command_id] = result
        self.update(tenant_id, commands=commands, seen_commands=seen)

    def tenants(self) -> Iterator[str]:
        yield from list(self._table.keys())
