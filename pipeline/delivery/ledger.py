"""What has been done in the CRM for each call, so redelivery and replay create nothing twice."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Protocol

__all__ = ["Ledger", "MemoryLedger", "TableLedger", "ledger_key"]


def ledger_key(tenant_id: str, call_id: str) -> str:
    return f"{tenant_id}|{call_id}"


class Ledger(Protocol):
    def facts(self, tenant_id: str, call_id: str) -> dict[str, Any]: ...

    def record(self, tenant_id: str, call_id: str, **facts: Any) -> None: ...

    async def sync(self) -> None:
        """Return once everything recorded so far is durable."""


class TableLedger:
    """Backed by a mapping (a Faust table partitioned by tenant, so the facts sit with the calls).

    Facts are written before the event is acknowledged; Faust flushes the changelog producer
    before it commits offsets, so what the ledger says is durable no later than the commit.
    """

    def __init__(self, table: MutableMapping[str, Any],
                 flush: Callable[[], Awaitable[object]] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self._table = table
        self._flush = flush
        self._clock = clock

    def facts(self, tenant_id: str, call_id: str) -> dict[str, Any]:
        value = self._table.get(ledger_key(tenant_id, call_id))
        return dict(value) if isinstance(value, dict) else {}

    def record(self, tenant_id: str, call_id: str, **facts: Any) -> None:
        key = ledger_key(tenant_id, call_id)
        current = self._table.get(key)
        merged = {**(current if isinstance(current, dict) else {"at": int(self._clock())}),
                  **facts}
        if merged != current:
            self._table[key] = merged

    def prune(self, older_than: float) -> int:
        """Forget calls first recorded before `older_than` (epoch seconds): their events are
        past the call topic's retention, so nothing can deliver them again."""
        stale = [key for key, value in list(self._table.items())
                 if isinstance(value, dict) and value.get("at", older_than) < older_than]
        for key in stale:
            del self._table[key]
        return len(stale)

    async def sync(self) -> None:
        if self._flush is not None:
            await self._flush()


class MemoryLedger(TableLedger):
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.data: dict[str, Any] = {}
        super().__init__(self.data, clock=clock)
