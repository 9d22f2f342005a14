"""Whether an operator command record is carried out: its envelope, signature, age, key and id."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import TypeAdapter, ValidationError

from pipeline.delivery.intake import describe_invalid
from pipeline.delivery.tenantstate import StateStore
from pipeline.signing import verify
from schemas.control import Command, CommandResult, SignedCommand

__all__ = ["COMMANDS", "MAX_AGE", "MAX_SKEW", "Refusal", "admit", "remember"]

# The desk's logger: a refused command is logged as the desk's, wherever the line is.
log = logging.getLogger("pipeline.operations.control")
COMMANDS = TypeAdapter(Command)
MAX_AGE = timedelta(hours=24)
MAX_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class Refusal:
    """The answer to a record that is not carried out (a repeat gets the answer it had)."""

    command_id: str
    status: str
    message: str
    command: Command | None = None
    data: dict[str, Any] | None = None


def admit(raw: bytes, key: bytes | None, *, operator_key: bytes | None, states: StateStore,
          clock: Callable[[], datetime]) -> Command | Refusal:
    """The command to carry out (verified, valid, fresh, keyed by its tenant, new), or why not."""
    try:
        envelope = SignedCommand.model_validate_json(raw)
    except ValidationError as exc:
        return Refusal("unknown", "refused",
                       "malformed command envelope: " + describe_invalid(exc))
    command_id = str(envelope.command.get("command_id", "unknown"))[:128]
    if operator_key is None:
        return Refusal(command_id, "refused", "operator commands are disabled: "
                       "CALLSYNC_OPERATOR_KEY is not set on the worker")
    if not verify(envelope.command, envelope.signature, operator_key):
        log.warning("refused a command with a bad signature (id %r)", command_id)
        return Refusal(command_id, "refused", "bad signature")
    try:
        command = COMMANDS.validate_python(envelope.command)
    except ValidationError as exc:
        return Refusal(command_id, "refused", describe_invalid(exc))
    now = clock()
    if not now - MAX_AGE <= command.issued_at <= now + MAX_SKEW:
        return Refusal(command_id, "refused", "issued_at is too old or in the future",
                       command=command)
    if key != command.tenant_id.encode():
        return Refusal(command_id, "refused", "the record key must be the "
                       "tenant_id (commands are partitioned by tenant)", command=command)
    seen = states.handled(command.tenant_id, command.command_id)
    if seen:
        return Refusal(command.command_id, seen["status"], "already handled: " + seen["message"],
                       command=command, data=seen.get("data"))
    if seen is not None:
        return Refusal(command.command_id, "refused", "already handled: this "
                       "command id was carried out before (its result is no "
                       "longer kept); send a new command", command=command)
    return command


def remember(states: StateStore, command: Command, result: CommandResult, *,
             clock: Callable[[], datetime]) -> None:
    """Every id is kept for as long as the command would be accepted (issued_at within
    MAX_AGE, MAX_SKEW ahead): a replay inside that window is answered, never carried out."""
    if command.type in ("status", "employees"):
        return
    states.remember(command.tenant_id, command.command_id, {
        "status": result.status, "message": result.message, "data": result.data},
        until=command.issued_at + MAX_AGE + MAX_SKEW, now=clock())
