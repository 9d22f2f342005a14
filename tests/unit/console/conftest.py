"""A console app over a fake command path: what it sends is recorded and answered at once."""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from argon2 import PasswordHasher
from pydantic import SecretStr

from pipeline.config import SecretsSettings, Settings
from pipeline.console.accounts import Accounts
from pipeline.console.app import Console, make_app
from pipeline.console.audit import AuditLog
from pipeline.console.commands import Dispatcher
from pipeline.console.sessions import SessionCodec
from schemas.control import CommandResult

PASSWORD = "correct horse battery"
# argon2id at its cheapest: a sign-in costs ~1 ms, not ~0.3 s (the parameters are not under test).
QUICK_HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
KEYS = "unit:" + base64.b64encode(b"k" * 32).decode()
Answer = Callable[[dict[str, Any]], tuple[str, str, dict[str, Any]]]


def default_answer(command: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    if command["type"] == "employees":
        return "done", "2 linked, 2 managers", {
            "mapping": {"tenant_id": command["tenant_id"], "senior_manager_id": 28,
                        "employees": {"emp-1": {"crm_user_id": 27, "extension": "101"}}},
            "roster": {"synced_at": datetime.now(UTC).isoformat(), "groups": ["manager"],
                       "managers": [{"id": 27, "name": "Olena", "email": "o@x.test"},
                                    {"id": 28, "name": "Petro", "email": None}]},
            "fallbacks": {"emp-9": "not linked to a CRM manager"}}
    if command["type"] == "status":
        return "done", "active", {"state": "active", "lane_backlog": 3,
                                  "fallbacks": {"emp-9": "not linked to a CRM manager"},
                                  "config": {"tenant_id": command["tenant_id"],
                                             "portal_url": "https://acme.retailcrm.ru/",
                                             "admin_email": "admin@acme.example.com",
                                             "site_code": "main", "timezone": "Europe/Kyiv",
                                             "module_code": "ringostat", "options": {}}}
    return "done", f"{command['type']} done", {}


@dataclass
class FakeWorker:
    """Stands in for send_and_follow: keeps each command (as signed) and answers it."""

    sent: list[dict[str, Any]] = field(default_factory=list)
    answer: Answer = default_answer

    async def __call__(self, settings: Settings, command: dict[str, Any]) -> CommandResult:
        self.sent.append(command)
        status, message, data = self.answer(command)
        return CommandResult(command_id=command["command_id"], tenant_id=command["tenant_id"],
                             type=command["type"], status=status,  # type: ignore[arg-type]
                             message=message, data=data, at=datetime.now(UTC))

    def kinds(self) -> list[str]:
        return [c["type"] for c in self.sent]


@dataclass
class Web:
    client: TestClient[Any, Any]
    console: Console
    worker: FakeWorker
    dir: Path

    async def csrf(self, path: str = "/") -> str:
        page = await (await self.client.get(path)).text()
        found = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert found, page[:500]
        return found.group(1)

    async def sign_in(self, name: str, password: str = PASSWORD) -> int:
        token = await self.csrf("/login")
        response = await self.client.post("/login", data={
            "name": name, "password": password, "csrf_token": token, "next": "/"},
            allow_redirects=False)
        return response.status


@pytest.fixture
async def web(tmp_path: Path) -> AsyncIterator[Web]:
    settings = Settings(operator_key=SecretStr("unit-operator-key"),
                        secrets=SecretsSettings(keys=SecretStr(KEYS)))
    accounts = Accounts(tmp_path / "accounts.json", hasher=QUICK_HASHER)
    accounts.set_password("olga", PASSWORD, role="operator")
    accounts.set_password("vera", PASSWORD, role="viewer")
    audit = AuditLog(tmp_path / "audit.jsonl")
    worker = FakeWorker()
    console = Console(settings=settings, accounts=accounts, audit=audit,
                      sessions=SessionCodec(b"s" * 32))
    console.dispatcher = Dispatcher(settings, audit, follow=worker)
    client = TestClient(TestServer(make_app(console, start_feed=False)))
    await client.start_server()
    try:
        yield Web(client, console, worker, tmp_path)
    finally:
        await client.close()
