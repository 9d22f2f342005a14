"""Committer: commits the call topic's commit points, only over durable outcomes."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

from pipeline.streams.offsets import OffsetGate, PartitionKey

__all__ = ["Committer"]

log = logging.getLogger(__name__)


class Committer:
    """Commits the gate's points: first the producer is flushed (the ledger's changelog and the
    invalid and dead-letter copies), so an offset is committed only over durable outcomes."""

    def __init__(self, gate: OffsetGate, *, flush: Callable[[], Awaitable[object]],
                 commit: Callable[[dict[PartitionKey, int]], Awaitable[bool]]) -> None:
        self.gate = gate
        self._flush = flush
        self._commit = commit
        self._lock = asyncio.Lock()

    async def commit(self, keys: Iterable[PartitionKey] | None = None) -> dict[PartitionKey, int]:
        async with self._lock:
            points = self.gate.commit_points(keys)
            if not points:
                return {}
            await self._flush()
            if not await self._commit(points):
                return {}
            self.gate.committed(points)
            return points

    async def release(self, keys: Iterable[PartitionKey], *, wait: float
                      ) -> dict[PartitionKey, int]:
        """A rebalance takes these partitions: no new work starts, what runs gets `wait`
        seconds to settle, the settled prefix is committed, and the partitions are forgotten."""
        keys = list(keys)
        self.gate.revoke(keys)
        deadline = time.monotonic() + wait
        while self.gate.running(keys) and time.monotonic() < deadline:
            await self.gate.settled_any(keys, deadline - time.monotonic())
        if self.gate.running(keys):
            log.warning("%d events of revoked partitions still under way; their next owner "
                        "delivers them again", self.gate.running(keys))
        try:
            return await self.commit(keys)
        finally:
            self.gate.forget(keys)
