"""A batch's call uploads: a call's first record wins, a later one with other content is refused."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime
from typing import Protocol, TypeVar

from pipeline.crm.client import MAX_CALLS_PER_UPLOAD, RetailCRMClient
from pipeline.delivery.errorpolicy import Reject
from pipeline.delivery.ledger import Ledger
from pipeline.delivery.outcome import failed, undeliverable
from pipeline.delivery.work import StepFailed, Work, done_tag
from pipeline.observability.metrics import BATCH_SIZE

__all__ = ["CONFLICTING_RECORD", "LATE_RECORDING", "upload", "upload_digest", "wants_upload"]

T = TypeVar("T")
METHOD = "/api/telephony/calls/upload"
LATE_RECORDING = (
    "late_recording: the call was uploaded without a recording, and retailCRM keeps a call's "
    "first upload (calls are de-duplicated by externalId and cannot be edited); publish a "
    "call's ended record once its recording URL is known")


CONFLICTING_RECORD = (
    "conflicting_record: another record of this call was uploaded first with other content; "
    "retailCRM keeps a call's first upload (calls are de-duplicated by externalId and cannot "
    "be edited)")


def upload_digest(work: Work) -> str:
    """Of the record as the producer sent it (not of the payload, which follows the tenant's
    settings): the same record delivered again is no conflict. Without the recording, which
    may come in a later record (`recording_wait_seconds`, else `late_recording`). Made once a
    work: a call's uploads asked it up to four times, 2 % of a busy worker's CPU."""
    if work.digest is None:
        body = work.event.model_dump_json(exclude={"recording_url"})
        work.digest = hashlib.sha256(body.encode()).hexdigest()[:16]
    return work.digest


class Steps(Protocol):
    """What the uploads use of `pipeline.delivery.steps.Steps` (which calls them: no import
    back)."""

    client: RetailCRMClient
    ledger: Ledger

    def call(self, method: str, fn: Callable[[], Awaitable[T]], *,
             deadline: datetime | None = None, work: Work | None = None,
             optional: bool = False) -> Awaitable[T]: ...


def wants_upload(work: Work) -> bool:
    """A record with a call to upload, neither parked nor refused."""
    return work.plan.upload is not None and work.broken is None and \
        work.outcome.undeliverable is None


async def upload(steps: Steps, works: list[Work]) -> None:
    """Calls not uploaded yet, in batches. A call's first record wins (retailCRM keeps a
    call's first upload); a later record of it with other content is not dropped silently
    but goes to the invalid topic (`late_recording`, `conflicting_record`)."""
    pending: dict[str, Work] = {}
    for w in works:
        if not wants_upload(w):
            continue
        if not w.live:
            w.revoke()
            continue
        facts = steps.ledger.facts(w.plan.tenant_id, w.plan.call_id)
        digest = upload_digest(w)
        first = pending.get(w.plan.call_id)
        recording = _recording(w)
        refused: str | None = None
        if first is not None:
            if upload_digest(first) != digest:
                refused = CONFLICTING_RECORD
            elif recording != _recording(first):
                refused = LATE_RECORDING if not _recording(first) else CONFLICTING_RECORD
        elif not (facts.get("call") or facts.get(done_tag(w))):
            pending[w.plan.call_id] = w
        elif recording and facts.get("recorded") is False:
            refused = LATE_RECORDING
        elif facts.get("upload_digest") not in (None, digest) or (
                recording and facts.get("recording") not in (None, recording)):
            refused = CONFLICTING_RECORD
        if refused is not None:
            w.add(undeliverable(refused))
    for chunk in _chunks(list(pending.values()), MAX_CALLS_PER_UPLOAD):
        await _upload(steps, chunk)


async def _upload(steps: Steps, chunk: list[Work]) -> None:
    calls = [w.plan.upload for w in chunk if w.plan.upload is not None]
    try:
        await steps.call(METHOD, lambda: steps.client.upload_calls(calls))
    except StepFailed as exc:
        if isinstance(exc.action, Reject) and len(chunk) > 1:
            for w in chunk:  # find the call the CRM refused: upload one by one
                await _upload(steps, [w])
        else:  # each call of the chunk parked, broken, or (alone) rejected
            for w in chunk:
                w.add(failed("upload", METHOD, exc.action))
        return
    BATCH_SIZE.observe(len(chunk))
    for w in chunk:
        steps.ledger.record(w.plan.tenant_id, w.plan.call_id, call=True,
                            upload_digest=upload_digest(w), recording=_recording(w),
                            recorded=w.plan.upload is not None and bool(
                                w.plan.upload.recordUrl))


def _recording(work: Work) -> str:
    """The uploaded recording, as a short digest ("" for none): a later record of the call
    that brings another one is a conflict, not a silent drop."""
    url = work.plan.upload.recordUrl if work.plan.upload is not None else None
    return hashlib.sha256(str(url).encode()).hexdigest()[:16] if url else ""


def _chunks(items: list[Work], size: int) -> Iterator[list[Work]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
