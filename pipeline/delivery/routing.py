"""A call record on a partition that is not its tenant's is moved there before it is read.

Every callsync topic is keyed by tenant and partitioned the way Kafka's Java client and aiokafka
partition: murmur2 of the key (`tables.tenant_partition`). The worker that owns a tenant's
partition holds its config, mapping, ledger and lane. A producer with another partitioner
(librdkafka's default is CRC32, sarama's FNV-1a) or one that names a partition puts a tenant's
calls where another worker may read them: without the tenant's config (`unknown_tenant`), or
with a second lane and ledger writes landing on a partition whose owner never sees them. So
such a record is copied, as it came, onto its tenant's partition (its timestamp kept, a header
saying where it came from), and settled here once the copy is stored; the owner reads the copy.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from pipeline.observability.metrics import REROUTED
from pipeline.streams.tables import tenant_partition

__all__ = ["MAX_ROUTED_KEY", "REROUTED_FROM", "HomeRouter", "SendHome"]

log = logging.getLogger(__name__)

MAX_ROUTED_KEY = 128  # a tenant id's longest: a longer key is no tenant's (intake refuses it)
REROUTED_FROM = "callsync-rerouted-from"
WARNED_KEPT = 1000
# send(partition, key, value, headers, timestamp in epoch seconds): returns once stored.
SendHome = Callable[[int, bytes, bytes, list[tuple[str, bytes]], float], Awaitable[object]]


class HomeRouter:
    def __init__(self, send: SendHome, *, partitions: int, max_value: int,
                 first_delay: float = 0.5, max_delay: float = 30.0) -> None:
        self._send = send
        self.partitions = partitions
        self.max_value = max_value  # a larger record is refused where it is (too_large)
        self.first_delay = first_delay
        self.max_delay = max_delay
        self._warned: set[bytes] = set()

    def away(self, key: bytes | None, raw: bytes | None, partition: int) -> int | None:
        """The partition the record belongs on, where that is not `partition`; None where it is
        home, or where intake refuses it anyway (no value or key, a key no tenant id can be, a
        value too large): it gets its reason on the invalid topic from here."""
        if not raw or not key or len(key) > MAX_ROUTED_KEY or len(raw) > self.max_value:
            return None
        try:
            tenant = key.decode()
        except UnicodeDecodeError:
            return None
        home = tenant_partition(tenant, self.partitions)
        return home if home != partition else None

    async def send_home(self, *, raw: bytes, key: bytes, home: int, where: str, stamp: float,
                        live: Callable[[], bool]) -> bool:
        """Copy the record onto `home`, trying until the copy is stored: True then; False if
        `live` turned false first (the partition moved: its next owner reads it again).
        `where` names the original (topic/partition/offset) in the copy's header."""
        delay = self.first_delay
        while live():
            try:
                await self._send(home, key, raw, [(REROUTED_FROM, where.encode())], stamp)
            except Exception:
                log.exception("could not move the record at %s to partition %d; trying again "
                              "in %.1f s", where, home, delay)
                await asyncio.sleep(delay)
                delay = min(self.max_delay, delay * 2)
                continue
            REROUTED.inc()
            self._warn(key, where, home)
            return True
        return False

    def _warn(self, key: bytes, where: str, home: int) -> None:
        if key in self._warned:
            return
        if len(self._warned) < WARNED_KEPT:
            self._warned.add(key)
        log.warning("tenant %s: a call record was produced to %s, not to the tenant's partition "
                    "%d; moved there (the producer's partitioner must be murmur2, as the Java "
                    "client's; librdkafka: partitioner=murmur2_random)",
                    key.decode(errors="replace"), where, home)
