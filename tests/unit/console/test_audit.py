"""The audit log: append-only lines joined by command id; no secret ever written."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from pipeline.console.audit import AuditLog, redacted
from pipeline.operations.operator import build_command
from schemas.control import CommandResult


def test_sent_and_answered_are_joined_newest_first(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "audit.jsonl")
    first = build_command("deactivate", "acme", operator="console:olga", reason="migration")
    second = build_command("link", "acme", operator="console:olga", employee_id="emp-1",
                           crm_user_id=27)
    audit.sent(first, user="olga")
    audit.sent(second, user="olga")
    audit.answered(first["command_id"], CommandResult(
        command_id=first["command_id"], status="done", message="deactivated",
        at=datetime.now(UTC)))
    audit.answered(second["command_id"], None)
    with audit.path.open("a") as torn:
        torn.write('{"event": "sent", "comm')  # a crash in the middle of a line
    entries = audit.entries()
    assert [e.type for e in entries] == ["link", "deactivate"]
    assert entries[1].status == "done" and entries[1].fields == {"reason": "migration"}
    assert entries[0].status == "no answer" and entries[0].user == "olga"


def test_no_key_reaches_the_file(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "audit.jsonl")
    command = build_command("activate", "acme", api_key="enc:v1:k:AAAA:BBBB",
                            options={"customer_utm_fields": {"source": "f"}},
                            portal_url="https://acme.retailcrm.ru")
    audit.sent(command, user="olga")
    text = audit.path.read_text()
    assert "enc:v1" not in text and '"api_key": "(given)"' in text
    assert "customer_utm_fields" in text
    assert redacted({"a": [{"secret_token": "x"}], "b": 1}) == {"a": [{"secret_token":
                                                                       "(given)"}], "b": 1}
