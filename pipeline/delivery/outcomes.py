"""A work's end in its lane: a failure noted, its outcome written and acked, or dropped revoked."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from pipeline.delivery.errorpolicy import DeadLetter
from pipeline.delivery.health import TenantHealth
from pipeline.delivery.ledger import Ledger
from pipeline.delivery.outcome import Outcome, broke
from pipeline.delivery.outlets import Outlets
from pipeline.delivery.planning import CallPlan
from pipeline.delivery.work import StepFailed, Work, finished
from pipeline.observability.metrics import DELIVERED

__all__ = ["drop_revoked", "failed", "finish"]

# The logger the lanes have always logged under (pipeline/delivery/lanes.py, which makes them).
log = logging.getLogger("pipeline.delivery.lanes")


def drop_revoked(batch: list[Work]) -> list[Work]:
    """Works whose partition was revoked mid-way stop here, unsettled and without an
    outcome: their next owner reads them again and the ledger tells it what was done."""
    kept = []
    for work in batch:
        if work.revoked or not work.live:
            work.revoke()
            if work.lease is not None:
                work.lease.abandon()
        else:
            kept.append(work)
    return kept


def failed(work: Work, exc: Exception, *, tenant_id: str, health: TenantHealth) -> None:
    if isinstance(exc, StepFailed) and isinstance(exc.action, DeadLetter):
        work.add(broke(exc.action))
        health.broke(exc.action)
        log.error("tenant %s integration broken (%s on %s); parking its events",
                  tenant_id, exc.action.reason, exc.action.method)
        return
    log.exception("call %s from %s failed unexpectedly", work.plan.call_id, work.source,
                  exc_info=exc)
    work.add(Outcome(parked=(DeadLetter(reason=f"internal:{type(exc).__name__}",
                                        broken=False),)))


async def finish(work: Work, *, tenant_id: str, outlets: Outlets, ledger: Ledger,
                 health: TenantHealth, write_facts: Callable[[CallPlan], None]) -> None:
    """The work's outcome, written until it is durable; then its facts and its caller's are
    written (`write_facts`: `Steps.write_now`), and the work is acked."""
    outcome = work.outcome
    while True:
        try:
            if outcome.broken is not None:
                await outlets.dead_letter(work, [outcome.broken])
            elif outcome.undeliverable is not None:
                await outlets.invalid(raw=work.raw, key=work.key, source=work.source,
                                      reason=outcome.undeliverable, tenant_id=tenant_id)
            else:
                if outcome.rejected:
                    await outlets.invalid(
                        raw=work.raw, key=work.key, source=work.source,
                        reason="crm_rejected: " + "; ".join(outcome.rejected),
                        tenant_id=tenant_id)
                if outcome.parked:
                    await outlets.dead_letter(work, outcome.parked)
                if outcome.delivered:
                    finished(ledger, work)
                    DELIVERED.inc()
            if outcome.broken is not None or outcome.parked:
                health.parked(work.source,
                              outage=outcome.broken is not None and outcome.broken.outage)
            break
        except Exception:
            log.exception("could not write the outcome of %s; retrying", work.source)
            await asyncio.sleep(1)
    # Its facts go with it (the commit over it flushes them first).
    write_facts(work.plan)
    work.ack()
