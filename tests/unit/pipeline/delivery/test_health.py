"""A tenant's health: every transition, the refused ones, what is stored and shown, old records."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY

from pipeline.delivery.errorpolicy import DeadLetter, Reason
from pipeline.delivery.health import Condition, Health, TenantHealth, publish_gauges
from pipeline.delivery.tenantstate import ReplayProgress, StateStore
from pipeline.delivery.work import SourceRef

T0 = datetime(2025, 11, 3, 9, 0, tzinfo=UTC)
KEY = DeadLetter(reason=Reason.INVALID_API_KEY, broken=True, method="/api/telephony/calls/upload")
DOWN = DeadLetter(reason="RetriesExhausted:CRMServerError", broken=True, method="/api/x")


class Tenant:
    """One tenant's health over a table of its own, with a clock that moves by hand."""

    def __init__(self, table: dict[str, Any] | None = None) -> None:
        self.id = f"t-{uuid.uuid4().hex[:8]}"  # gauges are process-wide: a tenant per test
        self.table: dict[str, Any] = {} if table is None else table
        self.states = StateStore(self.table)
        self.now = T0
        self.health = TenantHealth(self.states, self.id, clock=lambda: self.now)

    def later(self, minutes: int = 1) -> datetime:
        self.now += timedelta(minutes=minutes)
        return self.now

    def record(self) -> dict[str, Any]:
        return dict(self.table[self.id])

    def gauge(self, state: str) -> float | None:
        return REGISTRY.get_sample_value("callsync_integration_state",
                                         {"tenant": self.id, "state": state})

    def backlog(self) -> float | None:
        return REGISTRY.get_sample_value("callsync_dead_letter_backlog_events",
                                         {"tenant": self.id})

    def shown(self) -> list[str]:
        return [s for s in ("active", "broken", "deactivated") if self.gauge(s) == 1]


@pytest.fixture
def tenant() -> Tenant:
    return Tenant()


def put_in(tenant: Tenant, condition: str) -> None:
    if condition == "broken":
        tenant.health.broke(KEY)
    elif condition == "outage":
        tenant.health.broke(DOWN)
    elif condition == "deactivated":
        tenant.health.deactivated("first")
    assert tenant.health.now.condition == condition


# -- active, broken, outage ------------------------------------------------------------------

def test_a_new_tenant_is_active_and_stores_nothing(tenant: Tenant) -> None:
    assert tenant.health.now == Health() and tenant.health.now.condition is Condition.ACTIVE
    assert not tenant.health.stopped and tenant.health.dead_letter() is None
    assert tenant.table == {}


def test_a_refused_key_breaks_the_tenant_and_its_events_are_parked_with_it(
        tenant: Tenant) -> None:
    assert tenant.health.broke(KEY)
    now = tenant.health.now
    assert (now.condition, now.cause, now.method, now.since) == (
        Condition.BROKEN, Reason.INVALID_API_KEY, "/api/telephony/calls/upload", T0)
    assert tenant.health.stopped and now.probed
    assert tenant.health.dead_letter() == KEY
    stored = tenant.record()
    assert (stored["state"], stored["reason"], stored["method"]) == (
        "broken", "InvalidApiKey", "/api/telephony/calls/upload")
    assert tenant.shown() == ["broken"] and tenant.gauge("active") == 0


def test_a_portal_that_is_down_is_an_outage_stored_and_shown_as_broken(tenant: Tenant) -> None:
    assert tenant.health.broke(DOWN)
    now = tenant.health.now
    assert (now.condition, now.cause, now.detail) == (
        Condition.OUTAGE, Reason.RETRIES_EXHAUSTED, "CRMServerError")
    assert tenant.health.dead_letter() == DOWN and DOWN.outage
    stored = tenant.record()
    assert (stored["state"], stored["reason"]) == ("broken", "RetriesExhausted:CRMServerError")
    assert tenant.shown() == ["broken"]


def test_breaking_needs_an_action_that_breaks_the_tenant(tenant: Tenant) -> None:
    with pytest.raises(ValueError, match="AccessDenied"):
        tenant.health.broke(DeadLetter(reason=Reason.ACCESS_DENIED, broken=False, method="/m"))
    assert tenant.table == {}


def test_while_broken_the_first_cause_stands(tenant: Tenant) -> None:
    tenant.health.broke(KEY)
    tenant.later()
    assert not tenant.health.broke(DOWN)
    assert not tenant.health.broke(DeadLetter(reason=Reason.UNAUTHORIZED, broken=True))
    now = tenant.health.now
    assert (now.condition, now.cause, now.since) == (Condition.BROKEN, Reason.INVALID_API_KEY,
                                                     T0)


def test_a_deactivated_tenant_does_not_break_because_a_request_failed(tenant: Tenant) -> None:
    tenant.health.deactivated("unpaid")
    assert not tenant.health.broke(KEY) and not tenant.health.broke(DOWN)
    assert tenant.health.now.condition is Condition.DEACTIVATED
    assert tenant.record()["reason"] == "unpaid"


def test_only_a_deactivation_deactivates(tenant: Tenant) -> None:
    """A lane's batch parked with the deactivation's dead letter, the tenant re-activated
    meanwhile: that dead letter breaks nothing."""
    parked_with = DeadLetter(reason=Reason.DEACTIVATED, broken=True)
    assert not tenant.health.broke(parked_with)
    assert tenant.health.now.condition is Condition.ACTIVE


@pytest.mark.parametrize(("cause", "why"), [
    (KEY, "the key answered a probe"), (DOWN, "the portal answers again after an outage")])
def test_a_probe_that_answers_ends_a_broken_key_or_an_outage(
        tenant: Tenant, cause: DeadLetter, why: str) -> None:
    tenant.health.broke(cause)
    tenant.later()
    assert tenant.health.recovered()
    now = tenant.health.now
    assert (now.condition, now.cause, now.detail, now.method, now.since) == (
        Condition.ACTIVE, None, why, "", T0 + timedelta(minutes=1))
    assert tenant.record()["state"] == "active" and tenant.record()["reason"] == why
    assert tenant.shown() == ["active"] and tenant.health.dead_letter() is None


def test_a_probe_never_re_activates_and_an_active_tenant_has_nothing_to_recover(
        tenant: Tenant) -> None:
    assert not tenant.health.recovered()
    assert tenant.table == {}
    tenant.health.broke(KEY)
    tenant.health.deactivated()  # while a probe was on its way
    assert not tenant.health.recovered()
    assert tenant.health.now.condition is Condition.DEACTIVATED and tenant.health.stopped


# -- the operator's ----------------------------------------------------------------------------

@pytest.mark.parametrize("before", ["active", "broken", "outage", "deactivated"])
def test_deactivation_parks_the_tenant_from_any_condition(tenant: Tenant, before: str) -> None:
    put_in(tenant, before)
    tenant.later()
    assert tenant.health.deactivated("unpaid")
    now = tenant.health.now
    assert (now.condition, now.cause, now.detail, now.method, now.since) == (
        Condition.DEACTIVATED, Reason.DEACTIVATED, "unpaid", "", T0 + timedelta(minutes=1))
    assert tenant.health.dead_letter() == DeadLetter(reason="Deactivated", broken=True)
    assert not now.probed and tenant.shown() == ["deactivated"]
    stored = tenant.record()
    assert (stored["state"], stored["reason"]) == ("deactivated", "unpaid")


def test_a_deactivation_without_words_says_who_did_it(tenant: Tenant) -> None:
    tenant.health.deactivated()
    assert tenant.record()["reason"] == "deactivated by an operator"


@pytest.mark.parametrize("before", ["broken", "outage", "deactivated"])
def test_an_activation_ends_any_condition_and_forgets_the_denied_methods(
        tenant: Tenant, before: str) -> None:
    tenant.health.denied("/api/tasks/create")
    put_in(tenant, before)
    assert tenant.health.activated("f1")
    now = tenant.health.now
    assert (now.condition, now.detail, now.denied, now.key_fingerprint) == (
        Condition.ACTIVE, "activated", (), "f1")
    assert tenant.shown() == ["active"]
    assert not tenant.health.is_denied("/api/tasks/create")


# -- keys --------------------------------------------------------------------------------------

def test_a_new_key_ends_a_broken_state_and_its_denials(tenant: Tenant) -> None:
    tenant.health.uses_key("old")
    tenant.health.denied("/api/tasks/create")
    tenant.health.broke(KEY)
    assert tenant.health.new_key("new")
    now = tenant.health.now
    assert (now.condition, now.key_fingerprint, now.denied, now.detail) == (
        Condition.ACTIVE, "new", (), "a new key or portal")


def test_a_new_key_does_not_end_a_deactivation(tenant: Tenant) -> None:
    tenant.health.denied("/api/tasks/create")
    tenant.health.deactivated("unpaid")
    tenant.health.new_key("new")
    now = tenant.health.now
    assert (now.condition, now.detail, now.denied, now.key_fingerprint) == (
        Condition.DEACTIVATED, "unpaid", (), "new")


def test_a_restarted_worker_keeps_a_broken_key_broken_and_its_denials(tenant: Tenant) -> None:
    tenant.health.uses_key("k1")  # the first lane adopts its key
    assert tenant.record()["key_fingerprint"] == "k1"
    tenant.health.denied("/api/tasks/create")
    tenant.health.broke(KEY)
    restarted = TenantHealth(StateStore(tenant.table), tenant.id)
    assert not restarted.uses_key("k1")  # the same key: nothing to write, nothing forgotten
    assert restarted.stopped and restarted.dead_letter() == KEY
    assert restarted.is_denied("/api/tasks/create")
    assert restarted.uses_key("k2")  # another key: its state no longer holds
    assert not restarted.stopped and not restarted.is_denied("/api/tasks/create")


def test_a_record_that_knows_no_key_adopts_the_first_without_forgetting(tenant: Tenant) -> None:
    tenant.health.denied("/api/tasks/create")
    tenant.health.broke(KEY)
    assert tenant.health.uses_key("k1")
    assert tenant.health.stopped and tenant.health.is_denied("/api/tasks/create")
    assert tenant.health.now.key_fingerprint == "k1"


# -- bookkeeping -------------------------------------------------------------------------------

def test_a_denied_method_is_remembered_once(tenant: Tenant) -> None:
    assert tenant.health.denied("/api/tasks/create")
    assert not tenant.health.denied("/api/tasks/create")
    assert tenant.health.denied("/api/orders/create")
    assert tenant.record()["denied_methods"] == ["/api/tasks/create", "/api/orders/create"]
    assert tenant.health.is_denied("/api/orders/create") and not tenant.health.is_denied("/x")
    assert tenant.health.now.condition is Condition.ACTIVE


def test_parked_events_are_counted_and_an_outage_keeps_where_its_replay_starts(
        tenant: Tenant) -> None:
    tenant.health.parked(SourceRef("calls", 0, 7), outage=False)
    assert tenant.health.now.outage_offsets == {} and tenant.backlog() == 1
    tenant.health.broke(DOWN)
    for partition, offset in ((1, 12), (1, 10), (2, 5), (1, 11)):
        tenant.health.parked(SourceRef("calls", partition, offset), outage=True)
    now = tenant.health.now
    assert now.parked == 5 and dict(now.outage_offsets) == {"1": 10, "2": 5}
    assert tenant.record()["parked"] == 5 and tenant.backlog() == 5
    assert tenant.health.outage_replay_started()
    assert tenant.health.now.outage_offsets == {} and tenant.health.now.parked == 5


def test_a_finished_replay_settles_what_was_parked(tenant: Tenant) -> None:
    tenant.health.parked(SourceRef("calls", 0, 1), outage=False)
    settled = tenant.later(5)
    assert tenant.health.settled()
    now = tenant.health.now
    assert (now.parked, now.settled_at) == (0, settled) and tenant.backlog() == 0


def test_a_transition_keeps_the_rest_of_the_record(tenant: Tenant) -> None:
    progress = ReplayProgress(command_id="r1", window={"start": "a", "end": "b"},
                              ends={"0": 9}, next={"0": 3}, started_at=T0)
    tenant.states.update(tenant.id, replay=progress)
    tenant.states.remember(tenant.id, "c1", {"status": "done"}, until=T0, now=T0)
    tenant.health.broke(KEY)
    tenant.health.deactivated()
    stored = tenant.states.get(tenant.id)
    assert stored.replay == progress and stored.commands == {"c1": {"status": "done"}}


def test_nothing_is_written_when_nothing_changes(tenant: Tenant) -> None:
    writes: list[str] = []

    class Table(dict[str, Any]):
        def __setitem__(self, key: str, value: Any) -> None:
            writes.append(key)
            super().__setitem__(key, value)

    health = TenantHealth(StateStore(Table()), tenant.id)
    health.uses_key("k1")
    health.activated("k1")
    assert not health.new_key("k1") and not health.uses_key("k1")
    assert not health.recovered() and not health.outage_replay_started()
    assert len(writes) == 2


# -- records written before this module --------------------------------------------------------

OLD_RECORDS: dict[str, dict[str, Any]] = {
    # What the lanes' hooks, the control desk and the replay wrote, field by field.
    "outage": {"state": "broken", "reason": "RetriesExhausted:CRMTransportError",
               "method": "/api/telephony/manager", "since": "2025-11-03T09:00:00Z",
               "key_fingerprint": "0123456789ab", "denied_methods": [], "parked": 3,
               "outage_offsets": {"0": 41}, "settled_at": None, "replay": None,
               "commands": {}, "seen_commands": {}},
    "key": {"state": "broken", "reason": "AccountNotFound", "method": "/api/credentials",
            "since": "2025-11-03T09:00:00Z", "key_fingerprint": "0123456789ab",
            "denied_methods": ["/api/tasks/create"], "parked": 1},
    "deactivated": {"state": "deactivated", "reason": "unpaid", "method": "",
                    "since": "2025-11-03T09:00:00+00:00"},
    "probed": {"state": "active", "reason": "the key answered a probe", "method": ""},
    "legacy": {"state": "broken", "reason": "CRMAuthorizationError"},
    "empty": {},
}


@pytest.mark.parametrize(("name", "condition", "cause", "dead"), [
    ("outage", Condition.OUTAGE, Reason.RETRIES_EXHAUSTED,
     DeadLetter("RetriesExhausted:CRMTransportError", True, "/api/telephony/manager")),
    ("key", Condition.BROKEN, Reason.ACCOUNT_NOT_FOUND,
     DeadLetter("AccountNotFound", True, "/api/credentials")),
    ("deactivated", Condition.DEACTIVATED, Reason.DEACTIVATED, DeadLetter("Deactivated", True)),
    ("probed", Condition.ACTIVE, None, None),
    ("legacy", Condition.BROKEN, Reason.UNAUTHORIZED, DeadLetter("CRMAuthorizationError", True)),
    ("empty", Condition.ACTIVE, None, None),
])
def test_records_written_before_read_as_they_meant(
        name: str, condition: Condition, cause: Reason | None, dead: DeadLetter | None) -> None:
    tenant = Tenant()
    tenant.table[tenant.id] = dict(OLD_RECORDS[name])
    now = tenant.health.now
    assert (now.condition, now.cause) == (condition, cause)
    assert tenant.health.dead_letter() == dead and tenant.health.stopped is (dead is not None)
    # Written back unchanged: a worker of the version before reads what this one writes.
    fields = {k: v for k, v in tenant.states.get(tenant.id).model_dump(mode="json").items()
              if k in now.record()}
    assert {k: v for k, v in now.record().items() if k != "since"} == {
        k: v for k, v in fields.items() if k != "since"}
    assert now.since == tenant.states.get(tenant.id).since


def test_an_old_outage_record_goes_on_as_an_outage() -> None:
    tenant = Tenant()
    tenant.table[tenant.id] = dict(OLD_RECORDS["outage"])
    assert tenant.health.now.outage_offsets == {"0": 41} and tenant.health.now.parked == 3
    tenant.health.parked(SourceRef("calls", 0, 40), outage=True)
    assert tenant.health.now.outage_offsets == {"0": 40}
    assert tenant.health.recovered()
    assert tenant.record()["reason"] == "the portal answers again after an outage"


def test_an_unknown_broken_reason_is_kept_as_it_was() -> None:
    tenant = Tenant()
    tenant.table[tenant.id] = {"state": "broken", "reason": "SomethingNew:detail"}
    now = tenant.health.now
    assert (now.condition, now.cause, now.reason) == (Condition.BROKEN, None,
                                                      "SomethingNew:detail")
    assert tenant.health.dead_letter() == DeadLetter("SomethingNew:detail", True)


# -- the gauges --------------------------------------------------------------------------------

def test_the_gauges_follow_the_table_for_owned_tenants_and_leave_the_others() -> None:
    table: dict[str, Any] = {}
    mine, gone, down = Tenant(table), Tenant(table), Tenant(table)
    table[mine.id] = dict(OLD_RECORDS["deactivated"], parked=2)
    table[down.id] = dict(OLD_RECORDS["outage"])
    gone.health.broke(KEY)
    assert gone.shown() == ["broken"]
    table[f"{mine.id}|call-1"] = {"state": "broken"}  # not a tenant's record
    shown = publish_gauges(mine.states, lambda tenant_id: tenant_id != gone.id)
    assert shown == 2
    assert mine.shown() == ["deactivated"] and mine.backlog() == 2
    assert down.shown() == ["broken"] and down.backlog() == 3
    assert gone.gauge("broken") is None and gone.backlog() is None
