"""A call event's work item on its way through a tenant lane, and the outcomes of its steps."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from pipeline.crm.models import ManagerLookup
from pipeline.delivery.errorpolicy import DeadLetter, Reject
from pipeline.delivery.ledger import CallFacts, DoneFlag, Ledger, done_flag
from pipeline.delivery.outcome import DONE, REVOKED, Outcome
from pipeline.delivery.planning import CallPlan
from pipeline.streams.offsets import Lease
from schemas.call_event import CallEvent
from schemas.crm import CustomerRef

__all__ = ["Each", "Lead", "Revoked", "SourceRef", "StepFailed", "Work", "done_tag", "finished",
           "for_lead"]


@dataclass(frozen=True)
class SourceRef:
    topic: str
    partition: int
    offset: int

    def __str__(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


@dataclass
class Work:
    """One call event on its way through a tenant lane; `ack` runs once its outcome is durable."""

    event: CallEvent
    plan: CallPlan
    raw: bytes
    key: bytes | None
    source: SourceRef
    ack: Callable[[], object]
    # What its steps came to so far: each step's outcome is added (`add`), finish reads it.
    outcome: Outcome = DONE
    prepared: bool = False  # its per-call steps ran; only its upload is left (a held upload)
    announced: bool = False  # its pop-ups left on arrival, while its batch gathered uploads
    # The live consumer's claim on the record; None for replayed work (the replay tracks it).
    lease: Lease | None = None
    replayed: bool = False
    digest: str | None = None  # `uploads.upload_digest`'s, made once

    def add(self, outcome: Outcome) -> None:
        """A step's outcome, added to the call's."""
        self.outcome += outcome

    @property
    def broken(self) -> DeadLetter | None:
        """The integration broke under it: the call is parked with it."""
        return self.outcome.broken

    @property
    def revoked(self) -> bool:
        """Its partition moved to another owner mid-way: dropped unsettled, read again there."""
        return self.outcome.revoked

    def revoke(self) -> None:
        self.add(REVOKED)

    @property
    def live(self) -> bool:
        """Still this worker's to deliver: no CRM request is made for it otherwise."""
        return self.lease is None or self.lease.live

    def start(self) -> bool:
        """False if the record's partition moved to another owner: drop the work unstarted."""
        if self.lease is None or self.lease.start():
            return True
        self.lease.abandon()
        return False


@dataclass
class Lead:
    """A call whose lookup is done, on its way through its batch's customers, orders and tasks
    (pipeline/delivery/leads.py)."""

    work: Work
    facts: CallFacts  # the ledger's, as they were when the call began
    lookup: ManagerLookup
    new_lead: bool
    seen: bool  # delivered before: what it makes may exist although the ledger missed it
    customer: CustomerRef | None = None

    @property
    def decided(self) -> bool:
        """Its lead decision was recorded now (not read from an earlier delivery)."""
        return not self.seen


# Runs one call's step as its lane does: a revoked record or a bug stops that call only.
Each = Callable[[Callable[[Work], Awaitable[None]], Work], Awaitable[None]]


async def for_lead(each: Each, lead: Lead, step: Callable[[], Awaitable[None]]) -> None:
    """One lead's step, as its lane runs it (`each`)."""
    async def run(_: Work) -> None:
        await step()

    await each(run, lead.work)


class Revoked(Exception):
    """The record's partition was revoked while its work ran. The work stops before its next
    CRM request, so that two owners never write for one record at once: the next owner reads
    it again from the commit point and finds in the ledger what was done already."""


class StepFailed(Exception):
    def __init__(self, action: DeadLetter | Reject) -> None:
        super().__init__(action.reason)
        self.action = action


def done_tag(work: Work) -> DoneFlag:
    """Per stage: the `ended` record of a call has work left when its `answered` is done."""
    return done_flag(work.event.stage)


def finished(ledger: Ledger, work: Work) -> None:
    """Note a record whose every step succeeded, so a redelivery costs no request at all."""
    if work.outcome.delivered:
        ledger.mark(work.plan.tenant_id, work.plan.call_id, done_tag(work))
