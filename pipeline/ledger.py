"""What has been done in the CRM for each call, so redelivery and replay create nothing twice."""

from __future__ import annotations

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
                 flush: Callable[[], Awaitable[object]] | None = None) -> None:
        self._table = table
        self._flush = flush

    def facts(self, tenant_id: str, call_id: str) -> dict[str, Any]:
        value = self._table.get(ledger_key(tenant_id, call_id))
        return dict(value) if isinstance(value, dict) else {}

    def record(self, tenant_id: str, call_id: str, **facts: Any) -> None:
        key = ledger_key(tenant_id, call_id)
        current = self._table.get(key)
        merged = {**(current if isinstance(current, dict) else {}), **facts}
        if merged != current:
            self._table[key] = merged

    async def sync(self) -> None:
        if self._flush is not None:
            await self._flush()


class MemoryLedger(TableLedger):
    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        super().__init__(self.data)
