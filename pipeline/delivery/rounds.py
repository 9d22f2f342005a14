"""A lane's batch through its lookups and leads, in rounds that hold one call of a caller each."""

from __future__ import annotations

from collections.abc import Callable, Collection

from pipeline.delivery.leads import Leads
from pipeline.delivery.outcome import broke
from pipeline.delivery.steps import Steps
from pipeline.delivery.work import Each, Lead, Work

__all__ = ["Early", "Rounds", "rounds"]

# The lookups made ahead of a batch's leads, by id of their work (None: no lead to make).
Early = dict[int, Lead | None]


class Rounds:
    """Each call's lookup, then its batch's customers, orders and tasks (leads.py), in rounds:
    a caller's later call is looked up once the customer its first call made exists.

    The first round's lookups may run ahead (`look_ahead`), while the lane's previous batch
    still makes its leads: lookups spend the telephony budget (40/s), customers, orders and
    tasks the general one (10/s), and a backlog — a replay above all — is bounded by the larger
    of the two instead of their sum. A caller of the batch still in flight is not looked up
    ahead: its lookup waits for that batch, so it sees the customer that batch made."""

    def __init__(self, steps: Steps, each: Each,
                 failed: Callable[[Work, Exception], None]) -> None:
        self.steps = steps
        self.each = each
        self.failed = failed

    async def look_ahead(self, batch: list[Work], busy: Collection[str]) -> Early:
        """The first round's lookups of callers not in `busy` (the batch in flight)."""
        early: Early = {}
        first = rounds(batch)[:1]
        for work in first[0] if first else []:
            if self.steps.health.stopped:
                break
            if work.prepared or work.revoked or work.plan.phone in busy:
                continue

            async def begin(work: Work) -> None:
                early[id(work)] = await self.steps.begin(work)

            early[id(work)] = None  # begun: a failure is the work's outcome, not asked twice
            await self.each(begin, work)
        return early

    async def run(self, batch: list[Work], early: Early) -> None:
        for round_ in rounds(batch):
            leads: list[Lead] = []

            async def begin(work: Work, leads: list[Lead] = leads) -> None:
                lead = await self.steps.begin(work)
                if lead is not None:
                    leads.append(lead)

            for work in round_:
                broken = self.steps.health.dead_letter()
                if broken is not None:
                    work.add(broke(broken))
                    continue
                if id(work) in early:
                    lead = early[id(work)]
                    if lead is not None:
                        leads.append(lead)
                elif not work.prepared and not work.revoked:
                    await self.each(begin, work)
                work.prepared = True
            leads = [lead for lead in leads if lead.work.broken is None and not lead.work.revoked]
            if not leads:
                continue
            broken = self.steps.health.dead_letter()
            if broken is not None:
                for lead in leads:
                    lead.work.add(broke(broken))
                continue
            try:
                await Leads(self.steps, self.each).run(leads)
            except Exception as exc:  # noqa: BLE001 - a broken integration, or a bug: none vanish
                for lead in leads:
                    self.failed(lead.work, exc)


def rounds(batch: list[Work]) -> list[list[Work]]:
    """The batch in rounds, each with at most one call of a caller, in the batch's order."""
    out: list[list[Work]] = []
    calls: dict[str, int] = {}
    for work in batch:
        n = calls.get(work.plan.phone, 0)
        calls[work.plan.phone] = n + 1
        if n == len(out):
            out.append([])
        out[n].append(work)
    return out
