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
import enum
import logging
import re
import time
from collections.abc import Awaitable, Callable

from pipeline.observability.metrics import REROUTED
from pipeline.streams.tables import tenant_partition
from schemas.call_event import IDENT_MAX_LENGTH, IDENT_PATTERN

__all__ = ["MAX_ROUTED_KEY", "REROUTED_FROM", "HomeRouter", "Moved", "SendHome"]

log = logging.getLogger(__name__)

MAX_ROUTED_KEY = IDENT_MAX_LENGTH  # a longer key is no tenant id (intake refuses it)
REROUTED_FROM = "callsync-rerouted-from"
TRIES = 3  # then the record is handled where it is, as before there was a way home
TRY_SECONDS = 15.0  # one try's wait for the broker's acknowledgement
WARN_EVERY = 60.0
# A key named in the log: a tenant id, with too few digits for a phone number.
_SHOWN_KEY = re.compile(IDENT_PATTERN)
# send(partition, key, value, headers, timestamp in epoch seconds): returns once stored.
SendHome = Callable[[int, bytes, bytes, list[tuple[str, bytes]], float], Awaitable[object]]


class Moved(enum.Enum):
    HOME = "home"  # the copy is stored on the tenant's partition: settle the original
    STOPPED = "stopped"  # the partition moved on first: its next owner reads the record again
    FAILED = "failed"  # no copy could be stored: handle the record where it is


class HomeRouter:
    def __init__(self, send: SendHome, *, partitions: int, max_value: int,
                 first_delay: float = 0.5, tries: int = TRIES,
                 try_seconds: float = TRY_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._send = send
        self.partitions = partitions
        self.max_value = max_value  # a larger record is refused where it is (too_large)
        self.first_delay = first_delay
        self.tries = tries
        self.try_seconds = try_seconds
        self._clock = clock
        self._moved_since_warning = 0
        self._warned_at: float | None = None

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
                        live: Callable[[], bool]) -> Moved:
        """Copy the record onto `home`: HOME once a copy is stored; STOPPED if `live` turned
        false first; FAILED after `tries` tries (the broker refuses the worker's writes to the
        call topic, say), so a record is never stuck: the caller handles it where it is.
        `where` names the original (topic/partition/offset) in the copy's header."""
        delay = self.first_delay
        for attempt in range(1, self.tries + 1):
            if not live():
                return Moved.STOPPED
            try:
                async with asyncio.timeout(self.try_seconds):
                    await self._send(home, key, raw, [(REROUTED_FROM, where.encode())], stamp)
            except Exception:
                log.warning("could not copy the record at %s to partition %d (try %d of %d)",
                            where, home, attempt, self.tries, exc_info=True)
                if attempt < self.tries:
                    await asyncio.sleep(delay)
                    delay *= 2
                continue
            REROUTED.inc()
            self._warn(key, where, home)
            return Moved.HOME
        if not live():
            return Moved.STOPPED
        log.error("the record at %s could not be copied to its tenant's partition %d; it is "
                  "handled where it is (the worker needs to write to the call topic)",
                  where, home)
        return Moved.FAILED

    def _warn(self, key: bytes, where: str, home: int) -> None:
        """At most one line a minute, however many records and keys: a key is named only where
        it cannot be a phone number (a producer may key by the caller)."""
        self._moved_since_warning += 1
        now = self._clock()
        if self._warned_at is not None and now - self._warned_at < WARN_EVERY:
            return
        text = key.decode(errors="replace")
        shown = repr(text) if _SHOWN_KEY.match(text) and sum(c.isdigit() for c in text) < 9 \
            else f"of {len(key)} bytes"
        log.warning("%d call record(s) moved to their tenant's partition since the last such "
                    "line, the latest (key %s) from %s to partition %d: the producer's "
                    "partitioner must be murmur2, as the Java client's (librdkafka: "
                    "partitioner=murmur2_random)", self._moved_since_warning, shown, where, home)
        self._moved_since_warning = 0
        self._warned_at = now
