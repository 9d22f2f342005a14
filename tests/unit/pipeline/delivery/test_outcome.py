"""A call's outcome: what a failed step comes to, how steps add up, and what `finish` writes."""

from __future__ import annotations

from datetime import UTC, datetime

from pipeline.delivery.errorpolicy import DeadLetter, Reason, Reject
from pipeline.delivery.health import TenantHealth
from pipeline.delivery.ledger import MemoryLedger
from pipeline.delivery.outcome import DONE, REVOKED, Outcome, broke, failed, undeliverable
from pipeline.delivery.outcomes import finish
from pipeline.delivery.planning import CallPlan
from pipeline.delivery.steps import caller_key
from pipeline.delivery.tenantstate import StateStore
from pipeline.delivery.work import done_tag
from schemas.call_event import CallEvent
from schemas.integration import IntegrationConfig
from schemas.mapping import EmployeeMapping
from tests.crmlane import work_of
from tests.unit.pipeline.fakes import Outlets
from tests.unit.pipeline.operations.fakekafka import call_json

NOW = datetime(2024, 3, 13, 10, 0, tzinfo=UTC)
KEY = DeadLetter(reason=Reason.INVALID_API_KEY, broken=True, method="/api/orders/create")
DOWN = DeadLetter(reason="RetriesExhausted:CRMServerError", broken=True, method="/api/x")
SLOW = DeadLetter(reason="RetriesExhausted:CRMTimeout", broken=False)
CALLER = caller_key("acme", "https://acme.retailcrm.ru", "+380501234567")


def test_a_failed_step_is_rejected_parked_or_broken_by_the_policys_word() -> None:
    assert failed("order", "/api/orders/create", Reject(reason="CRMValidationError")) == \
        Outcome(rejected=("order: CRMValidationError",))
    assert failed("order", "/api/orders/create", KEY) == Outcome(broken=KEY)
    parked = failed("lookup", "/api/telephony/manager", SLOW).parked
    assert parked == (DeadLetter(reason="lookup:RetriesExhausted:CRMTimeout", broken=False,
                                 method="/api/telephony/manager"),)
    named = DeadLetter(reason=Reason.ACCESS_DENIED, broken=False, method="/api/tasks/create")
    assert failed("task", "/api/other", named).parked[0].method == "/api/tasks/create"


def test_steps_add_up_and_the_first_cause_stands() -> None:
    a = failed("lookup", "/api/telephony/manager", SLOW)
    b = failed("order", "/api/orders/create", Reject(reason="bad"))
    total = DONE + a + broke(KEY) + b + broke(DOWN) + undeliverable("x") + undeliverable("y")
    assert total.parked == a.parked
    assert total.rejected == ("order: bad",)
    assert total.broken == KEY
    assert total.undeliverable == "x"
    assert not total.revoked and (total + REVOKED).revoked and (REVOKED + DONE).revoked
    assert DONE + DONE == DONE and DONE.delivered
    assert not any(o.delivered for o in (a, b, broke(KEY), undeliverable("x"), REVOKED))


class Lane:
    """A work with a given outcome through `finish`: what went where, and its ack."""

    def __init__(self, outcome: Outcome) -> None:
        raw = call_json("c9", NOW)
        event = CallEvent.model_validate_json(raw)
        config = IntegrationConfig.model_validate({
            "tenant_id": "acme", "portal_url": "https://acme.retailcrm.ru",
            "admin_email": "admin@acme.example.com", "site_code": "main", "api_key": "k"})
        mapping = EmployeeMapping(tenant_id="acme", senior_manager_id=28)
        self.acked = 0
        self.work = work_of(event, config, mapping, 7, ack=self._ack, raw=raw)
        self.work.add(outcome)
        self.outlets = Outlets()
        self.ledger = MemoryLedger()
        self.health = TenantHealth(StateStore({}), "acme", clock=lambda: NOW)

    def _ack(self) -> None:
        self.acked += 1
        self.written_at_ack = dict(self.ledger.data)  # what the commit over it would flush

    @property
    def invalids(self) -> list[str]:
        return [copy["reason"] for copy in self.outlets.invalids]

    @property
    def dead(self) -> list[list[str]]:
        return [[a.reason for a in actions] for _, actions in self.outlets.dead]

    async def finish(self) -> None:
        await finish(self.work, tenant_id="acme", outlets=self.outlets,
                     ledger=self.ledger, health=self.health, write_facts=self._write_facts)

    def _write_facts(self, plan: CallPlan) -> None:  # as Steps.write_now: the call's, its caller's
        self.ledger.write(("acme", plan.call_id), ("acme", CALLER))

    def done(self) -> bool:
        return bool(self.ledger.facts("acme", "c9").get(done_tag(self.work)))


async def test_a_delivered_call_is_marked_done_and_acked() -> None:
    lane = Lane(DONE)
    lane.ledger.record_caller("acme", CALLER, customer_id=41)
    lane.ledger.record("acme", "other", lead=True)  # another call's, still under way
    await lane.finish()
    assert lane.done() and lane.acked == 1
    # Its own facts and its caller's were written before the ack; the other call's wait.
    assert set(lane.written_at_ack) == {"acme|c9", f"acme|{CALLER}"}
    assert lane.written_at_ack["acme|c9"][done_tag(lane.work)] is True
    assert (lane.invalids, lane.dead, lane.health.now.parked) == ([], [], 0)


async def test_rejected_and_parked_steps_each_go_their_way_and_nothing_is_marked_done() -> None:
    lane = Lane(failed("order", "/api/orders/create", Reject(reason="bad"))
                + failed("task", "/api/tasks/create", SLOW))
    await lane.finish()
    assert lane.invalids == ["crm_rejected: order: bad"]
    assert lane.dead == [["task:RetriesExhausted:CRMTimeout"]]
    assert not lane.done() and lane.acked == 1 and lane.health.now.parked == 1


async def test_a_broken_call_is_one_dead_letter_whatever_else_its_steps_came_to() -> None:
    lane = Lane(failed("order", "/api/orders/create", Reject(reason="bad")) + broke(KEY)
                + failed("task", "/api/tasks/create", SLOW) + undeliverable("x"))
    await lane.finish()
    assert (lane.invalids, lane.dead) == ([], [[Reason.INVALID_API_KEY]])
    assert not lane.done() and lane.acked == 1 and lane.health.now.parked == 1


async def test_an_undeliverable_call_goes_to_the_invalid_topic_with_its_reason() -> None:
    lane = Lane(undeliverable("conflicting_record: …") + failed("task", "/api/x", SLOW))
    await lane.finish()
    assert (lane.invalids, lane.dead) == (["conflicting_record: …"], [])
    assert not lane.done() and lane.acked == 1
