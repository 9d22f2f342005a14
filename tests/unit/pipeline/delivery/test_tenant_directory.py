"""The directory over tables of stored bytes: parsed on demand, idle tenants let go."""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from datetime import UTC, datetime
from typing import Any

import pytest

from pipeline.delivery.employees import Manager, Roster
from pipeline.delivery.intake import TenantDirectory
from pipeline.signing import seal_record, stored_form
from pipeline.streams.tables import ZlibValues
from schemas.mapping import EmployeeLink, EmployeeMapping
from tests.unit.trust import KEYRING, RECORD_KEY, config_record

NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
IDLE = 600.0


def config_bytes(tenant_id: str, site_code: str = "main") -> bytes:
    config = {"tenant_id": tenant_id, "portal_url": f"https://{tenant_id}.retailcrm.ru",
              "admin_email": f"admin@{tenant_id}.example.com", "site_code": site_code,
              "api_key": f"k-{tenant_id}-123456"}
    return stored_form(seal_record("integration", config_record(config), RECORD_KEY,
                                   signed_at=NOW))


def mapping_bytes(tenant_id: str, e2: int = 2) -> bytes:
    mapping = EmployeeMapping(tenant_id=tenant_id, senior_manager_id=9, employees={
        "e1": EmployeeLink(crm_user_id=1, extension="101"),
        "e2": EmployeeLink(crm_user_id=e2, extension="102")})
    return stored_form(seal_record("mapping", mapping.model_dump(mode="json"), RECORD_KEY,
                                   signed_at=NOW))


class Tables:
    def __init__(self, *tenants: str, held: Callable[[], MutableMapping[str, Any]] = dict
                 ) -> None:
        self.integrations = held()
        self.mappings = held()
        self.rosters = held()
        for t in tenants:
            self.integrations[t] = config_bytes(t)
            self.mappings[t] = mapping_bytes(t)
        self.clock = [1000.0]
        self.directory = TenantDirectory(self.integrations, self.mappings, self.rosters,
                                         keyring=KEYRING, record_key=RECORD_KEY,
                                         clock=lambda: self.clock[0])


@pytest.fixture(params=[dict, ZlibValues], ids=["plain", "compressed"])
def tables(request: pytest.FixtureRequest) -> Tables:
    """Over plain dicts, and over the compressed values the worker's tables hold (whose
    records' versions are read without inflating them)."""
    return Tables("acme", "globex", "initech", held=request.param)


def test_only_the_tenants_asked_about_are_parsed(tables: Tables) -> None:
    config = tables.directory.config("acme")
    assert config is not None and config.api_key.get_secret_value() == "k-acme-123456"
    assert tables.directory.mapping("acme").crm_user_for("e2") == 2
    assert tables.directory.held() == 1
    assert all(isinstance(v, bytes) for v in tables.integrations.values()), "tables untouched"


def test_a_tenant_quiet_for_longer_than_the_idle_time_is_let_go_and_parsed_again(
        tables: Tables) -> None:
    directory = tables.directory
    before = directory.config("acme")
    directory.mapping("acme")
    directory.config("globex")
    tables.clock[0] += IDLE / 2
    directory.mapping("globex")  # globex called since
    tables.clock[0] += IDLE / 2 + 1
    assert directory.evict_idle(IDLE) == 1
    assert directory.held() == 1
    again = directory.config("acme")
    assert again is not before and again == before, "parsed afresh from the same bytes"
    assert directory.mapping("acme").crm_user_for("e1") == 1
    assert directory.config("globex") is not None


def test_a_tenant_with_a_lane_is_kept_however_quiet(tables: Tables) -> None:
    config = tables.directory.config("acme")
    tables.directory.config("globex")
    tables.clock[0] += IDLE * 10
    assert tables.directory.evict_idle(IDLE, keep={"acme"}) == 1
    assert tables.directory.config("acme") is config


def test_a_sweep_opens_a_config_without_keeping_it(tables: Tables) -> None:
    directory = tables.directory
    swept = directory.config("initech", keep=False)
    assert swept is not None and swept.tenant_id == "initech"
    assert directory.held() == 0
    kept = directory.config("acme")
    tables.clock[0] += IDLE + 1
    assert directory.config("acme", keep=False) is kept, "a config held is used as it is"
    assert directory.evict_idle(IDLE) == 1, "a sweep does not keep a tenant in use"


def test_a_changed_record_is_parsed_again(tables: Tables) -> None:
    assert (config := tables.directory.config("acme")) is not None
    assert config.site_code == "main"
    tables.integrations["acme"] = config_bytes("acme", site_code="outlet")
    assert (changed := tables.directory.config("acme")) is not None
    assert changed.site_code == "outlet"


def test_a_refused_record_is_kept_refused_even_by_a_sweep(
        tables: Tables, caplog: pytest.LogCaptureFixture) -> None:
    tables.integrations["acme"] = b'{"not": "signed"}'
    assert tables.directory.config("acme", keep=False) is None
    assert tables.directory.config("acme") is None
    refusals = [r for r in caplog.records if "cannot be used" in r.getMessage()]
    assert len(refusals) == 1, "logged once, not on every sweep"


def test_a_roster_stored_as_bytes_drops_links_to_users_who_left(tables: Tables) -> None:
    roster = Roster(manager_groups=["sales"], synced_at=NOW,
                    managers={1: Manager(id=1, name="One"), 9: Manager(id=9, name="Senior")})
    tables.rosters["acme"] = roster.model_dump_json().encode()
    mapping = tables.directory.mapping("acme")
    assert set(mapping.employees) == {"e1"} and mapping.senior_manager_id == 9
    assert tables.directory.roster("acme") == roster


def test_a_changed_mapping_or_roster_is_parsed_again(tables: Tables) -> None:
    assert tables.directory.mapping("acme").crm_user_for("e2") == 2
    tables.mappings["acme"] = mapping_bytes("acme", e2=5)
    assert tables.directory.mapping("acme").crm_user_for("e2") == 5
    assert tables.directory.stored_mapping("acme").employees["e2"].crm_user_id == 5
    roster = Roster(manager_groups=["sales"], synced_at=NOW,
                    managers={1: Manager(id=1, name="One"), 9: Manager(id=9, name="Senior")})
    tables.rosters["acme"] = roster.model_dump_json().encode()
    assert tables.directory.mapping("acme").crm_user_for("e2") is None, "5 is no manager"
    del tables.rosters["acme"]
    assert tables.directory.mapping("acme").crm_user_for("e2") == 5
    assert tables.directory.roster("acme") is None


class Inflations(ZlibValues):
    """Compressed values that count how often one was inflated (read)."""

    def __init__(self) -> None:
        super().__init__()
        self.inflated = 0

    def __getitem__(self, key: Any) -> Any:
        self.inflated += 1
        return super().__getitem__(key)


def test_an_unchanged_record_is_not_inflated_to_be_looked_up() -> None:
    tables = Tables("acme", held=Inflations)
    tables.rosters["acme"] = Roster(manager_groups=["sales"], synced_at=NOW, managers={
        1: Manager(id=1, name="One"), 2: Manager(id=2, name="Two")}).model_dump_json().encode()
    held = [tables.integrations, tables.mappings, tables.rosters]

    def inflated() -> int:
        return sum(t.inflated for t in held if isinstance(t, Inflations))

    assert tables.directory.config("acme") is not None
    assert tables.directory.mapping("acme").crm_user_for("e2") == 2
    first = inflated()
    assert first == 3, "each record read once, to be parsed"
    for _ in range(3):
        assert tables.directory.config("acme") is not None
        assert tables.directory.mapping("acme").crm_user_for("e2") == 2
    assert inflated() == first
