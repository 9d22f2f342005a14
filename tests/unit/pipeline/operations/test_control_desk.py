"""The control desk: signed writes, first set-up, replays across a restart, rotation, redaction."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import pytest
from pydantic import ValidationError

from pipeline.crm.methods import SETTINGS
from pipeline.operations.activation import DEFAULT_TIMEZONE
from pipeline.operations.operator import build_command
from pipeline.secrets import KeyRing, kid_of
from pipeline.signing import open_record
from schemas.integration import IntegrationConfig
from tests.unit.pipeline.operations.desk import KEY, SENIOR, Portal, Worker
from tests.unit.trust import KEYRING, RECORD_KEY


def everything_stored(worker: Worker) -> str:
    return json.dumps([worker.integrations, worker.mappings, worker.states_table,
                       [p[2] for p in worker.published],
                       [r.model_dump(mode="json") for r in worker.results]], default=str)


async def test_a_new_tenant_goes_from_nothing_to_active_with_signed_commands_only() -> None:
    worker = Worker(Portal())
    refused = await worker.send(worker.activation())
    assert refused.status == "refused" and "--senior-manager" in refused.message
    result = await worker.send(worker.activation(senior_manager_id=SENIOR))
    assert result.status == "done", result.message
    config = worker.directory.config("acme")
    assert config is not None and config.api_key.get_secret_value() == KEY
    assert worker.directory.stored_mapping("acme").senior_manager_id == SENIOR
    assert [(kind, key) for kind, key, _ in worker.published] == [
        ("integration", b"acme"), ("mapping", b"acme")]
    for kind, _, value in worker.published:  # what went to the compacted topics is signed
        open_record(value, kind=kind, key=RECORD_KEY)
    assert KEY not in everything_stored(worker), "the key is stored only as an envelope"
    assert worker.portal.edits[-1]["active"] is True and worker.lanes.resets == ["acme"]


async def test_activate_does_not_replace_a_senior_manager_it_did_not_set() -> None:
    worker = Worker(Portal())
    await worker.set_up()
    other = await worker.send(worker.activation(senior_manager_id=SENIOR + 1))
    assert other.status == "refused" and "employees senior" in other.message
    same = await worker.send(worker.activation(senior_manager_id=SENIOR))
    assert same.status == "done"


async def test_an_activation_key_in_clear_or_for_another_tenant_is_refused() -> None:
    worker = Worker(Portal())
    clear = worker.activation(senior_manager_id=SENIOR) | {"api_key": KEY}
    result = await worker.send(clear)
    assert result.status == "refused" and "api_key" in result.message
    stolen = worker.activation(senior_manager_id=SENIOR) | {
        "api_key": KEYRING.encrypt(KEY, tenant_id="other")}
    result = await worker.send(stolen)
    assert result.status == "refused" and "cannot be decrypted" in result.message
    assert worker.integrations == {} and KEY not in everything_stored(worker)


async def test_a_replayed_deactivate_after_101_commands_and_a_restart_is_not_carried_out(
        ) -> None:
    worker = Worker(Portal())
    await worker.set_up()
    deactivate = build_command("deactivate", "acme", reason="maintenance")
    assert (await worker.send(deactivate)).status == "done"
    assert (await worker.send(worker.activation())).status == "done"
    for _ in range(100):
        assert (await worker.send(build_command("rekey", "acme"))).status == "done"
    edits, health = len(worker.portal.edits), worker.health().now
    again = await worker.send(deactivate)
    assert again.message.startswith("already handled")
    assert worker.states.get("acme").state == "active"
    assert len(worker.portal.edits) == edits and worker.health().now == health

    restarted = worker.restarted()
    after = await restarted.send(deactivate)
    assert after.message.startswith("already handled") and after.status == "refused"
    assert restarted.states.get("acme").state == "active"
    assert len(worker.portal.edits) == edits and restarted.health().now == health


async def test_command_ids_are_pruned_once_out_of_the_window() -> None:
    worker = Worker(Portal())
    await worker.set_up()
    first = build_command("deactivate", "acme")
    await worker.send(first)
    assert first["command_id"] in worker.states.get("acme").seen_commands
    worker.now[0] += timedelta(hours=24, minutes=6)
    late = await worker.send(first)
    assert late.status == "refused" and "too old" in late.message
    await worker.send(build_command("deactivate", "acme", issued_at=worker.now[0].isoformat()))
    seen = worker.states.get("acme").seen_commands
    assert first["command_id"] not in seen and len(seen) == 1


async def test_rotation_rekey_under_new_then_only_new_decrypts() -> None:
    old = KeyRing([("old", b"o" * 32)])
    worker = Worker(Portal(), keyring=old)
    await worker.set_up()
    stored = json.loads(worker.integrations["acme"])  # the tables keep records as bytes
    assert kid_of(stored["body"]["record"]["api_key"]) == "old"

    rotating = worker.restarted(keyring=KeyRing([("new", b"n" * 32), ("old", b"o" * 32)]))
    assert rotating.directory.config("acme") is not None, "both keys accepted meanwhile"
    result = await rotating.send(build_command("rekey", "acme"))
    assert result.status == "done" and result.data == {"kid": "new", "previous_kid": "old"}
    assert (await rotating.send(build_command("status", "acme"))).data["key_id"] == "new"

    rotated = rotating.restarted(keyring=KeyRing([("new", b"n" * 32)]))
    config = rotated.directory.config("acme")
    assert config is not None and config.api_key.get_secret_value() == KEY
    assert rotated.directory.stored_mapping("acme").senior_manager_id == SENIOR
    assert Worker(Portal(), keyring=old, tables=(rotated.integrations, {}, {})
                  ).directory.config("acme") is None, "the old key alone no longer opens it"


async def test_rekey_migrates_a_config_stored_in_clear_before_encryption() -> None:
    worker = Worker(Portal())
    plain = {"tenant_id": "acme", "portal_url": "https://acme.retailcrm.ru",
             "admin_email": "admin@acme.example.com", "site_code": "main", "api_key": KEY}
    worker.integrations["acme"] = plain
    worker.mappings["acme"] = {"tenant_id": "acme", "senior_manager_id": SENIOR}
    assert worker.directory.config("acme") is None, "unsigned: not used"
    result = await worker.send(build_command("rekey", "acme"))
    assert result.status == "done" and result.data["previous_kid"] == "none (stored in clear)"
    config = worker.directory.config("acme")
    assert config is not None and config.api_key.get_secret_value() == KEY
    assert worker.directory.stored_mapping("acme").senior_manager_id == SENIOR
    stored = [*worker.integrations.values(), *worker.mappings.values()]
    assert all(isinstance(v, bytes) and KEY.encode() not in v for v in stored)


async def test_a_portal_that_echoes_the_key_never_gets_it_into_a_result() -> None:
    worker = Worker(Portal())
    worker.portal.echo = True
    result = await worker.send(worker.activation(senior_manager_id=SENIOR))
    assert result.status == "failed" and "Validation error" in result.message
    b64 = base64.b64encode(KEY.encode()).decode()
    for form in (KEY, quote(KEY, safe=""), b64):
        assert form not in result.model_dump_json()


async def test_the_desk_scrubs_what_reaches_it_with_a_key_anyway(
        monkeypatch: pytest.MonkeyPatch) -> None:
    worker = Worker(Portal())
    await worker.set_up()

    async def leaky(*args: Any, **kwargs: Any) -> tuple[str, str, dict[str, Any]]:
        return "done", f"the key is {KEY}", {"nested": [f"url {quote(KEY)}"]}

    monkeypatch.setattr(worker.desk, "_carry_out", leaky)
    result = await worker.send(build_command("deactivate", "acme"))
    assert KEY not in result.model_dump_json() and "**********" in result.message


def without_zone(worker: Worker, **fields: Any) -> dict[str, Any]:
    command = worker.activation(senior_manager_id=SENIOR, **fields)
    del command["timezone"]
    return command


async def test_a_first_set_up_without_a_zone_takes_the_accounts_where_the_key_may_read_it(
        ) -> None:
    portal = Portal()
    portal.methods.append(SETTINGS)
    portal.zone = "Asia/Almaty"
    worker = Worker(portal)
    result = await worker.send(without_zone(worker))
    assert result.status == "done", result.message
    config = worker.directory.config("acme")
    assert config is not None and config.timezone == "Asia/Almaty"
    assert result.data["timezone"] == {"zone": "Asia/Almaty",
                                       "source": "the account's own (/api/settings)"}


async def test_a_key_that_cannot_read_the_settings_keeps_the_default_and_says_so() -> None:
    worker = Worker(Portal())
    result = await worker.send(without_zone(worker))
    assert result.status == "done", result.message
    config = worker.directory.config("acme")
    assert config is not None and config.timezone == DEFAULT_TIMEZONE == "Europe/Moscow"
    assert "--timezone" in result.data["timezone"]["source"]
    assert "/api/v5/settings" not in worker.portal.paths, "a method the key lacks is not asked"


@pytest.mark.parametrize(("zone", "why"), [
    ("Mars/Olympus", "names no zone known here"), ("", "names no zone known here"),
    ("Europe", "names no zone known here"),  # a folder: ZoneInfo raises IsADirectoryError
    ("localtime", "names no zone known here"),  # the worker machine's own, not the account's
    ("../../../../etc/passwd", "names no zone known here"),
    ("A" * 300, "names no zone known here"),  # ZoneInfo raises OSError (name too long)
    (42, "did not answer (CRMMalformedResponse)"),
    (None, "did not answer (CRMServerError)"),  # a 500
])
async def test_a_zone_the_account_cannot_give_leaves_the_default_and_activation_goes_on(
        zone: object, why: str) -> None:
    portal = Portal()
    portal.methods.append(SETTINGS)
    portal.zone = zone
    worker = Worker(portal)
    result = await worker.send(without_zone(worker))
    assert result.status == "done", result.message
    config = worker.directory.config("acme")
    assert config is not None and config.timezone == DEFAULT_TIMEZONE
    assert "/api/v5/settings" in worker.portal.paths
    assert why in result.data["timezone"]["source"]


@pytest.mark.parametrize("zone", ["Europe", "localtime", "../../../../etc/passwd", "A" * 300])
def test_a_named_zone_that_is_no_zone_is_a_validation_error_not_an_os_error(zone: str) -> None:
    with pytest.raises(ValidationError, match="unknown IANA time zone"):
        IntegrationConfig.model_validate({
            "tenant_id": "acme", "portal_url": "https://acme.retailcrm.ru",
            "admin_email": "admin@acme.example.com", "site_code": "main", "api_key": KEY,
            "timezone": zone})


async def test_a_named_zone_or_a_stored_one_is_not_replaced_by_the_accounts() -> None:
    portal = Portal()
    portal.methods.append(SETTINGS)
    portal.zone = "Asia/Almaty"
    worker = Worker(portal)
    named = await worker.send(worker.activation(senior_manager_id=SENIOR))  # Europe/Kyiv
    assert named.status == "done" and named.data["timezone"]["source"] == "as named"
    again = await worker.send(without_zone(worker))
    assert again.status == "done" and again.data["timezone"] == {"zone": "Europe/Kyiv",
                                                                  "source": "kept"}
    config = worker.directory.config("acme")
    assert config is not None and config.timezone == "Europe/Kyiv"
    assert "/api/v5/settings" not in worker.portal.paths
