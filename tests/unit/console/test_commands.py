"""The dispatcher: roles, the audit around each command, and a send that fails."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from pipeline.config import Settings
from pipeline.console.accounts import Account
from pipeline.console.audit import AuditLog
from pipeline.console.commands import Dispatcher, Forbidden
from schemas.control import CommandResult

SETTINGS = Settings(operator_key=SecretStr("k"))
OLGA = Account("olga", "operator")
VERA = Account("vera", "viewer")


async def unreachable(settings: Settings, command: dict[str, Any]) -> CommandResult | None:
    raise ConnectionError("no broker")


async def test_a_viewer_may_only_ask(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "audit.jsonl")
    dispatcher = Dispatcher(SETTINGS, audit, follow=unreachable)
    for kind in ("activate", "deactivate", "replay", "link", "unlink", "senior"):
        with pytest.raises(Forbidden, match="read-only"):
            dispatcher.send(VERA, kind, "acme")
    with pytest.raises(Forbidden, match="unknown command"):
        dispatcher.send(OLGA, "rekey", "acme")  # key rotation stays with the CLI
    assert audit.entries() == [], "a refused command is not sent, so not audited"
    sent = dispatcher.send(VERA, "status", "acme")
    assert await sent.answer(5) is not None


async def test_a_failed_send_is_answered_and_audited(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "audit.jsonl")
    dispatcher = Dispatcher(SETTINGS, audit, follow=unreachable)
    sent = dispatcher.send(OLGA, "deactivate", "acme", reason="x")
    answer = await sent.answer(5)
    assert answer is not None and answer.status == "failed"
    assert "could not send it: ConnectionError" in answer.message
    entry = audit.entries()[0]
    assert entry.status == "failed" and entry.user == "olga"
    assert dispatcher.finished[sent.command_id] == answer and not dispatcher.pending


def test_without_the_operator_key_the_console_does_not_start(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="CALLSYNC_OPERATOR_KEY"):
        Dispatcher(Settings(), AuditLog(tmp_path / "audit.jsonl"))
