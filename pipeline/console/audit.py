"""The console's audit log: every command it sent, who sent it, when, and the answer."""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from schemas.control import CommandResult

__all__ = ["AuditEntry", "AuditLog", "redacted"]

SECRET_WORDS = ("key", "secret", "password", "token")


def redacted(value: Any) -> Any:
    """A command as the audit keeps it: any field named like a secret is left out, so neither
    a tenant key nor its encrypted form is ever written (only that one was given)."""
    if isinstance(value, dict):
        return {k: ("(given)" if any(w in str(k).lower() for w in SECRET_WORDS)
                    else redacted(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [redacted(v) for v in value]
    return value


@dataclass
class AuditEntry:
    command_id: str
    type: str
    tenant_id: str
    user: str
    sent_at: str
    fields: dict[str, Any] = field(default_factory=dict)
    status: str = "sent"
    message: str = ""
    answered_at: str | None = None


class AuditLog:
    """Append-only: a `sent` line when a command goes out and an `answer` line when its final
    (or last) answer comes; lines are never rewritten, readers join them by command id."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)

    def _append(self, line: dict[str, Any]) -> None:
        data = (json.dumps(line, ensure_ascii=False, default=str) + "\n").encode()
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)

    def sent(self, command: dict[str, Any], *, user: str) -> None:
        fields = {k: v for k, v in command.items()
                  if k not in ("type", "command_id", "tenant_id", "issued_at", "operator")}
        self._append({"event": "sent", "at": datetime.now(UTC).isoformat(), "user": user,
                      "command_id": command["command_id"], "type": command["type"],
                      "tenant_id": command["tenant_id"], "fields": redacted(fields)})

    def answered(self, command_id: str, result: CommandResult | None) -> None:
        self._append({"event": "answer", "at": datetime.now(UTC).isoformat(),
                      "command_id": command_id,
                      "status": result.status if result else "no answer",
                      "message": result.message if result else
                      "no answer before the console stopped following"})

    def entries(self, limit: int = 500) -> list[AuditEntry]:
        """The newest `limit` commands, newest first, each with its answer if one came."""
        found: dict[str, AuditEntry] = {}
        if not self.path.exists():
            return []
        with self.path.open(encoding="utf-8") as lines:
            for raw in lines:
                try:
                    line = json.loads(raw)
                except ValueError:
                    continue  # a torn last line after a crash
                if line.get("event") == "sent":
                    found[line["command_id"]] = AuditEntry(
                        command_id=line["command_id"], type=line["type"],
                        tenant_id=line["tenant_id"], user=line["user"], sent_at=line["at"],
                        fields=line.get("fields", {}))
                elif line.get("event") == "answer" and line["command_id"] in found:
                    entry = found[line["command_id"]]
                    entry.status, entry.message = line["status"], line["message"]
                    entry.answered_at = line["at"]
        return list(reversed(found.values()))[:limit]
