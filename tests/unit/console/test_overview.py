"""What the console folds from the topics: signed configs without keys, states, letters,
results."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from pipeline.console.overview import Overview, shown_state
from pipeline.signing import record_key, seal_record

KEY = record_key(b"operator-key")
CONFIG: dict[str, Any] = {"tenant_id": "acme", "portal_url": "https://acme.retailcrm.ru/",
          "admin_email": "a@acme.example.com", "site_code": "main",
          "api_key": "enc:v1:k:AAAA:BBBB", "timezone": "Europe/Kyiv",
          "module_code": "ringostat", "options": {}}


def sealed(record: dict[str, Any], key: bytes = KEY) -> bytes:
    return json.dumps(seal_record("integration", record, key,
                                  signed_at=datetime.now(UTC))).encode()


def test_configs_are_kept_without_their_key_and_only_when_signed() -> None:
    overview = Overview(record_key=KEY)
    overview.apply_config(b"acme", sealed(CONFIG))
    assert overview.configs["acme"]["portal_url"] == "https://acme.retailcrm.ru/"
    assert "api_key" not in overview.configs["acme"]
    overview.apply_config(b"globex", sealed({**CONFIG, "tenant_id": "globex"}, b"k" * 32))
    overview.apply_config(b"initech", json.dumps({**CONFIG, "tenant_id": "initech"}).encode())
    overview.apply_config(b"other", sealed(CONFIG))  # the key is not its tenant_id
    assert set(overview.configs) == {"acme"} and overview.refused_configs == 2
    overview.apply_config(b"acme", None)
    assert overview.configs == {}


def test_states_from_the_changelog_and_how_they_are_shown() -> None:
    overview = Overview()
    overview.apply_state(b'"acme"', json.dumps({"state": "broken", "reason": "RetriesExhausted:"
                                                "CRMServerError", "outage_offsets": {"0": 5},
                                                "parked": 3, "commands": {"x": {}}}).encode())
    overview.apply_state(b'"acme|other"', b'{"state": "broken"}')
    overview.apply_state(b'"globex"', json.dumps({"state": "deactivated"}).encode())
    assert set(overview.states) == {"acme", "globex"}
    assert "commands" not in overview.states["acme"]
    assert overview.tenant("acme").shown == "outage" and overview.tenant("acme").parked == 3
    assert shown_state({"state": "broken", "reason": "InvalidApiKey"}) == "broken"
    assert shown_state(None) == "active"
    assert overview.tenant("nobody").shown == "not set up"
    assert [v.tenant_id for v in overview.tenants(state="deactivated")] == ["globex"]
    assert [v.tenant_id for v in overview.tenants(search="retries")] == ["acme"]
    overview.apply_state(b'"globex"', None)
    assert "globex" not in overview.states


def test_the_last_delivery_is_the_newest_uploaded_call() -> None:
    overview = Overview()
    overview.apply_ledger(b'"acme|c1"', b'{"at": 1, "call": true}', 1_700_000_000_000)
    overview.apply_ledger(b'"acme|c2"', b'{"at": 1, "lead": true}', 1_800_000_000_000)
    overview.apply_ledger(b'"acme|c0"', b'{"at": 1, "call": true}', 1_600_000_000_000)
    assert overview.last_delivery["acme"] == datetime.fromtimestamp(1_700_000_000, UTC)


def test_letters_are_counted_per_tenant_and_described_by_their_headers() -> None:
    overview = Overview()
    for offset in range(3):
        overview.apply_letter("dead", [
            ("callsync-tenant", b"acme"), ("callsync-call-id", f"c{offset}".encode()),
            ("callsync-reason", b"InvalidApiKey"), ("callsync-broken", b"1"),
            ("callsync-source-topic", b"calls"), ("callsync-source-partition", b"1"),
            ("callsync-source-offset", str(offset).encode()),
            ("callsync-time", b"2026-11-25T10:00:00+00:00")],
            topic="dlq", partition=1, offset=offset)
    overview.apply_letter("invalid", [("callsync-reason", b"undecodable: x")],
                          topic="invalid", partition=0, offset=0)
    view = overview.tenant("acme")
    assert view.dead == 3 and view.invalid == 0 and overview.unattributed() == 1
    newest = overview.letters_of("dead", "acme")[0]
    assert newest.call_id == "c2" and newest.source == "calls[1]@2"
    assert newest.position == "dlq[1]@2" and newest.broken
    assert newest.at == datetime(2026, 11, 25, 10, tzinfo=UTC)


def test_results_keep_each_commands_answers_and_the_latest_status() -> None:
    overview = Overview()
    at = datetime.now(UTC).isoformat()
    for status in ("accepted", "progress", "done"):
        overview.apply_result(json.dumps({"command_id": "r-1", "tenant_id": "acme",
                                          "type": "replay", "status": status,
                                          "at": at}).encode())
    overview.apply_result(json.dumps({"command_id": "s-1", "tenant_id": "acme",
                                      "type": "status", "status": "done", "at": at,
                                      "data": {"fallbacks": {"emp-9": "not linked"},
                                               "config": {"tenant_id": "acme"}}}).encode())
    assert overview.apply_result(b"not json") is None
    answer = overview.answer("r-1")
    assert answer is not None and answer.status == "done"
    assert len(overview.results["r-1"]) == 3
    assert overview.tenant("acme").fallbacks == {"emp-9": "not linked"}
    assert overview.tenant_ids() == ["acme"]
