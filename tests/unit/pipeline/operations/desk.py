"""A control desk over in-memory tables and a stub portal, as the desk's unit tests drive it."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, cast
from urllib.parse import quote

import httpx

from pipeline.crm.client import RetailCRMClient
from pipeline.crm.methods import REQUIRED_METHODS, TELEPHONY_UPLOAD_METHODS
from pipeline.delivery.health import TenantHealth
from pipeline.delivery.intake import TenantDirectory
from pipeline.delivery.lanes import LaneRegistry
from pipeline.delivery.tenantstate import StateStore
from pipeline.operations.control import ControlDesk
from pipeline.operations.operator import build_command
from pipeline.operations.window import ReplayWindow
from pipeline.secrets import KeyRing
from pipeline.signing import RecordKind, RecordWriter, sign
from schemas.control import CommandResult
from schemas.integration import IntegrationConfig
from tests.unit.trust import KEYRING, OPERATOR_KEY, RECORD_KEY

__all__ = ["KEY", "SENIOR", "Lanes", "Portal", "Worker"]

KEY = "k-acme-0123456789"
SENIOR = 28


class Portal:
    """Just enough retailCRM for activation: credentials, shops, a user, the module edit.

    The attributes shape what it answers: the key's methods and shop access, the portal's shops,
    an echo of the key, no answer at all (`down`) or no account at this address (`gone`)."""

    def __init__(self) -> None:
        self.edits: list[dict[str, Any]] = []
        self.echo = False
        self.down = False
        self.gone = False
        self.methods: list[str] = [*REQUIRED_METHODS, *TELEPHONY_UPLOAD_METHODS]
        self.site_access = "access_full"
        self.sites_available = ["main"]
        self.shops = {"main": "Main shop"}
        self.zone: object = "Europe/Moscow"  # the account's, in /api/v5/settings
        self.paths: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        if self.gone:
            return httpx.Response(404, json={"success": False,
                                             "errorMsg": "Account does not exist."})
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
        path = path[path.find("/api/"):]  # under the portal's base path, if it has one
        self.paths.append(path)
        if path == "/api/credentials":
            return httpx.Response(200, json={
                "success": True, "credentials": self.methods, "siteAccess": self.site_access,
                "sitesAvailable": self.sites_available})
        if path == "/api/v5/reference/sites":
            return httpx.Response(200, json={"success": True, "sites": {
                code: {"code": code, "name": name} for code, name in self.shops.items()} or []})
        if path == "/api/v5/settings":
            if self.zone is None:
                return httpx.Response(500, text="<html>Internal Server Error</html>")
            return httpx.Response(200, json={"success": True, "settings": {
                "timezone": {"value": self.zone, "updated_at": "2024-01-01 00:00:00"}}})
        if path.startswith("/api/v5/users/"):
            return httpx.Response(200, json={"success": True, "user": {
                "id": int(path.rsplit("/", 1)[1]), "active": True, "isManager": True}})
        if path.endswith("/edit"):
            self.edits.append(json.loads(dict(httpx.QueryParams(request.content.decode()))[
                "integrationModule"]))
            return httpx.Response(200, json={"success": True, "info": []})
        return httpx.Response(404, json={"success": False, "errorMsg": "Not found"})


class Lanes:
    def __init__(self) -> None:
        self.lanes: dict[str, Any] = {}
        self.resets: list[str] = []

    def reset(self, config: IntegrationConfig) -> None:
        self.resets.append(config.tenant_id)


class Worker:
    """One worker's desk over tables that outlive it (as a restart finds them)."""

    def __init__(self, portal: Portal, *, keyring: KeyRing = KEYRING,
                 tables: tuple[dict[str, Any], dict[str, Any], dict[str, Any]] | None = None,
                 clock: list[datetime] | None = None) -> None:
        self.portal = portal
        self.integrations, self.mappings, self.states_table = tables or ({}, {}, {})
        self.published: list[tuple[RecordKind, bytes, dict[str, Any]]] = []
        self.results: list[CommandResult] = []
        # start_replay's calls: tenant, command id, window, and the lanes reset before it.
        self.replays: list[tuple[str, str, ReplayWindow, list[str]]] = []
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
        self.replays.append((tenant_id, command_id, window, list(self.lanes.resets)))

    @asynccontextmanager
    async def _client_for(self, config: IntegrationConfig) -> AsyncIterator[RetailCRMClient]:
        async with RetailCRMClient(base_url=str(config.portal_url), api_key=config.api_key,
                                   transport=httpx.MockTransport(self.portal)) as client:
            yield client

    def health(self, tenant_id: str = "acme") -> TenantHealth:
        """The tenant's health, as its lane reads it."""
        return TenantHealth(self.states, tenant_id)

    def restarted(self, *, keyring: KeyRing | None = None) -> Worker:
        return Worker(self.portal, keyring=keyring or self.keyring, clock=self.now,
                      tables=(self.integrations, self.mappings, self.states_table))

    @staticmethod
    def signed(command: dict[str, Any]) -> bytes:
        return json.dumps({"command": command, "signature": sign(command, OPERATOR_KEY)}
                          ).encode()

    async def send(self, command: dict[str, Any], *, key: bytes | None = None) -> CommandResult:
        """Sign and hand to the desk, keyed by the tenant unless `key` says otherwise."""
        return await self.desk.handle(self.signed(command),
                                      key if key is not None else command["tenant_id"].encode())

    def activation(self, *, api_key: str = KEY, tenant: str = "acme",
                   **fields: Any) -> dict[str, Any]:
        return build_command("activate", tenant, **{
            "portal_url": "https://acme.retailcrm.ru", "admin_email": "admin@acme.example.com",
            "site_code": "main", "api_key": self.keyring.encrypt(api_key, tenant_id=tenant),
            "timezone": "Europe/Kyiv", "issued_at": self.now[0].isoformat(), **fields})

    async def set_up(self) -> None:
        result = await self.send(self.activation(senior_manager_id=SENIOR))
        assert result.status == "done", result.message
