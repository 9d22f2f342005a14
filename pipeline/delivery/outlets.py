"""Where events go that are not delivered: the invalid-events and dead-letter topics."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Protocol

from pipeline.delivery.errorpolicy import DeadLetter
from pipeline.delivery.work import SourceRef, Work
from pipeline.observability.metrics import DEAD_LETTERED, INVALID

__all__ = ["Headers", "Outlets", "Send", "TopicOutlets", "dead_letter_headers",
           "invalid_headers"]

log = logging.getLogger(__name__)
Headers = list[tuple[str, bytes]]
# The producer refuses a record over 1,000,000 bytes: a copy keeps at most this much of the
# original body (and says so), so an oversized record still lands with its reason.
MAX_COPY_BYTES = 256 * 1024
MAX_KEY_BYTES = 1024
# send(key, value, headers): produce one record and return once it is handed to the producer.
Send = Callable[[bytes | None, bytes, Headers], Awaitable[object]]


class Outlets(Protocol):
    async def invalid(self, *, raw: bytes | None, key: bytes | None, source: SourceRef,
                      reason: str, tenant_id: str | None) -> None: ...

    async def dead_letter(self, work: Work, actions: Sequence[DeadLetter]) -> None: ...


def _common(source: SourceRef, now: datetime) -> Headers:
    return [("callsync-source-topic", source.topic.encode()),
            ("callsync-source-partition", str(source.partition).encode()),
            ("callsync-source-offset", str(source.offset).encode()),
            ("callsync-time", now.isoformat().encode())]


def invalid_headers(*, source: SourceRef, reason: str, tenant_id: str | None,
                    now: datetime) -> Headers:
    headers = [("callsync-reason", reason[:2000].encode(errors="replace")),
               *_common(source, now)]
    if tenant_id:
        headers.append(("callsync-tenant", tenant_id.encode()))
    return headers


def dead_letter_headers(work: Work, actions: Sequence[DeadLetter], now: datetime) -> Headers:
    return [("callsync-tenant", work.plan.tenant_id.encode()),
            ("callsync-call-id", work.plan.call_id.encode()),
            ("callsync-reason", ";".join(a.reason for a in actions).encode()),
            ("callsync-methods", ";".join(sorted({a.method for a in actions if a.method}))
             .encode()),
            ("callsync-broken", b"1" if any(a.broken for a in actions) else b"0"),
            *_common(work.source, now)]


def bounded(key: bytes | None, raw: bytes | None, headers: Headers
            ) -> tuple[bytes | None, bytes, Headers]:
    """The copy of a record as it can be produced: body and key cut to size, with headers
    that say how long they were."""
    raw = raw or b""
    if len(raw) > MAX_COPY_BYTES:
        headers = [*headers, ("callsync-truncated-value", str(len(raw)).encode())]
        raw = raw[:MAX_COPY_BYTES]
    if key is not None and len(key) > MAX_KEY_BYTES:
        headers = [*headers, ("callsync-truncated-key", str(len(key)).encode())]
        key = key[:MAX_KEY_BYTES]
    return key, raw, headers


class TopicOutlets:
    def __init__(self, *, send_invalid: Send, send_dead_letter: Send,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._invalid = send_invalid
        self._dead_letter = send_dead_letter
        self._clock = clock

    async def invalid(self, *, raw: bytes | None, key: bytes | None, source: SourceRef,
                      reason: str, tenant_id: str | None) -> None:
        await self._invalid(*bounded(key, raw, invalid_headers(
            source=source, reason=reason, tenant_id=tenant_id, now=self._clock())))
        INVALID.labels(reason.split(":")[0][:40]).inc()
        log.warning("invalid event from %s: %s", source, reason[:300],
                    extra={"topic": source.topic, "partition": source.partition,
                           "offset": source.offset, "tenant": tenant_id})

    async def dead_letter(self, work: Work, actions: Sequence[DeadLetter]) -> None:
        await self._dead_letter(*bounded(work.key, work.raw,
                                         dead_letter_headers(work, actions, self._clock())))
        for action in actions:
            DEAD_LETTERED.labels(action.reason.split(":")[-1][:40]).inc()
        source = work.source
        log.warning("dead-lettered call %s of %s from %s: %s", work.plan.call_id,
                    work.plan.tenant_id, source, ";".join(a.reason for a in actions),
                    extra={"topic": source.topic, "partition": source.partition,
                           "offset": source.offset, "tenant": work.plan.tenant_id,
                           "call_id": work.plan.call_id})
