"""The roster, the effective mapping and who may be linked."""

from __future__ import annotations

from datetime import UTC, datetime

from pipeline.delivery.employees import Manager, Roster, effective_mapping, link_refusal
from schemas import EmployeeLink, EmployeeMapping

ROSTER = Roster(manager_groups=["manager"], synced_at=datetime(2026, 11, 25, tzinfo=UTC),
                managers={27: Manager(id=27, name="Olena"), 28: Manager(id=28, name="Petro")})
MAPPING = EmployeeMapping(tenant_id="acme", senior_manager_id=28, employees={
    "emp-1": EmployeeLink(crm_user_id=27, extension="101"),
    "emp-2": EmployeeLink(crm_user_id=30, extension="102")})


def test_links_to_users_who_left_the_managers_drop_out() -> None:
    effective, dropped = effective_mapping(MAPPING, ROSTER)
    assert set(effective.employees) == {"emp-1"}
    assert dropped == {"emp-2": "user 30 is no longer an active manager"}
    assert effective.senior_manager_id == 28


def test_a_senior_who_left_is_no_senior() -> None:
    effective, _ = effective_mapping(MAPPING.model_copy(update={"senior_manager_id": 31}),
                                     ROSTER)
    assert effective.senior_manager_id is None


def test_without_a_roster_the_mapping_is_taken_as_it_is() -> None:
    assert effective_mapping(MAPPING, None) == (MAPPING, {})


def test_only_active_managers_can_be_linked() -> None:
    assert link_refusal(ROSTER, 27) is None
    reason = link_refusal(ROSTER, 29)
    assert reason is not None and "29" in reason and "manager" in reason
