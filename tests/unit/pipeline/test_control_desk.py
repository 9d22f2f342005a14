"""The control desk: signed writes, first set-up, replays across a restart, rotation, redaction."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from urllib.parse import quote

import httpx
import pytest

from pipeline.control import ControlDesk
from pipeline.crm.client import RetailCRMClient
from pipeline.crm.methods import REQUIRED_METHODS
from pipeline.intake import TenantDirectory
from pipeline.lanes import LaneRegistry
from pipeline.operator import build_command
from pipeline.secrets import KeyRing, kid_of
from pipeline.signing import RecordKind, RecordWriter, open_record, sign
from pipeline.tenantstate import StateStore
from pipeline.window import ReplayWindow
from schemas.control import CommandResult
from schemas.integration import IntegrationConfig
from tests.unit.trust import KEYRING, OPERATOR_KEY, RECORD_KEY

KEY = "k-acme-0123456789"
SENIOR = 28


class Portal:
    """Just enough retailCRM for activation: credentials, a user, the module edit."""

    def __init__(self) -> None:
        self.edits: list[dict[str, Any]] = []
        self.echo = False

    def __call__(self, request: httpx.Request) -> httpx.Response:
        sent = request.headers.get("X-API-KEY", "")
        if self.echo:  # a portal that quotes the key back, in every form
            return httpx.Response(400, json={
                "success": False, "errorMsg": f"Validation error: key {sent} is not allowed",
                "errors": {"apiKey": quote(sent, safe=""),
                           "hint": base64.b64encode(sent.encode()).decode()}})
        if sent != KEY:
            return httpx.Response(403, json={"success": False,
                                             "errorMsg": 'Wrong "apiKey" value.'})
        path = request.url.path
        if path == "/api/credentials":
            return httpx.Response(200, json={"success": True, "credentials": list(
                REQUIRED_METHODS), "siteAccess": "access_full", "sitesAvailable": ["main"]})
        if path.startswith("/api/v5/users/"):
            return httpx.Response(200, json={"success": True, "user": {
                "id": int(path.rsplit("/", 1)[1]), "active": True, "isManager": True}})
        if path.endswith("/edit"):
            self.edits.append(json.loads(dict(httpx.QueryParams(request.content.decode()))[
                "integrationModule"]))
            return httpx.Response(200, json={"success": True, "info": {}})
        return httpx.Response(404, json={"success": False, "errorMsg": "Not found"})


class Lanes:
    def __init__(self) -> None:
        self.lanes: dict[str, Any] = {}
        self.resets: list[str] = []
        self.deactivated: list[str] = []

    def reset(self, config: IntegrationConfig) -> None:
        self.resets.append(config.tenant_id)

    def deactivate(self, tenant_id: str) -> None:
        self.deactivated.append(tenant_id)


class Worker:
    """One worker's desk over tables that outlive it (as a restart finds them)."""

    def __init__(self, portal: Portal, *, keyring: KeyRing = KEYRING,
                 tables: tuple[dict[str, Any], dict[str, Any], dict[str, Any]] | None = None,
                 clock: list[datetime] | None = None) -> None:
        self.portal = portal
        self.integrations, self.mappings, self.states_table = tables or ({}, {}, {})
        self.published: list[tuple[RecordKind, bytes, dict[str, Any]]] = []
        self.results: list[CommandResult] = []
        self.now = clock or [datetime.now(UTC)]
        self.keyring = keyring
        self.directory = TenantDirectory(self.integrations, self.mappings, keyring=keyring,
                                         record_key=RECORD_KEY)
        self.records = RecordWriter(key=RECORD_KEY, keyring=keyring,
                                    integrations=self.integrations, mappings=self.mappings,
                                    publish=self._publish, clock=lambda: self.now[0])
        self.states = StateStore(self.states_table)
        self.lanes = Lanes()
        self.desk = ControlDesk(
            operator_key=OPERATOR_KEY, directory=self.directory, records=self.records,
            states=self.states, lanes=cast(LaneRegistry, self.lanes), report=self._report,
            start_replay=self._start_replay, client_for=self._client_for, keyring=keyring,
            clock=lambda: self.now[0])

    async def _publish(self, kind: RecordKind, key: bytes, value: bytes) -> None:
        self.published.append((kind, key, json.loads(value)))

    async def _report(self, result: CommandResult) -> None:
        self.results.append(result)

    async def _start_replay(self, tenant_id: str, command_id: str,
                            window: ReplayWindow) -> None:
        pass

    @asynccontextmanager
    async def _client_for(self, config: IntegrationConfig) -> AsyncIterator[RetailCRMClient]:
        async with RetailCRMClient(base_url=str(config.portal_url), api_key=config.api_key,
                                   transport=httpx.MockTransport(self.portal)) as client:
            yield client

    def restarted(self, *, keyring: KeyRing | None = None) -> Worker:
        return Worker(self.portal, keyring=keyring or self.keyring, clock=self.now,
                      tables=(self.integrations, self.mappings, self.states_table))

    @staticmethod
    def signed(command: dict[str, Any]) -> bytes:
        return json.dumps({"command": command, "signature": sign(command, OPERATOR_KEY)}
                          ).encode()

    async def send(self, command: dict[str, Any]) -> CommandResult:
        return await self.desk.handle(self.signed(command), command["tenant_id"].encode())

    def activation(self, *, api_key: str = KEY, tenant: str = "acme",
                   **fields: Any) -> dict[str, Any]:
        return build_command("activate", tenant, portal_url="https://acme.retailcrm.ru",
                             admin_email="admin@acme.example.com", site_code="main",
                             api_key=self.keyring.encrypt(api_key, tenant_id=tenant),
                             timezone="Europe/Kyiv", **fields)

    async def set_up(self) -> None:
        result = await self.send(self.activation(senior_manager_id=SENIOR))
        assert result.status == "done", result.message


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
    edits = len(worker.portal.edits)
    again = await worker.send(deactivate)
    assert again.message.startswith("already handled")
    assert worker.states.get("acme").state == "active"
    assert len(worker.portal.edits) == edits and worker.lanes.deactivated == ["acme"]

    restarted = worker.restarted()
    after = await restarted.send(deactivate)
    assert after.message.startswith("already handled") and after.status == "refused"
    assert restarted.states.get("acme").state == "active"
    assert len(worker.portal.edits) == edits and restarted.lanes.deactivated == []


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
    assert kid_of(worker.integrations["acme"]["body"]["record"]["api_key"]) == "old"

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
    assert KEY not in json.dumps([worker.integrations, worker.mappings])


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
