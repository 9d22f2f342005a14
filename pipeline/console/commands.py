"""Sending commands from the console: built and signed by operations.operator, audited, followed."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from pipeline.config import Settings
from pipeline.console.accounts import Account
from pipeline.console.audit import AuditLog
from pipeline.operations.operator import FINAL, build_command, send_and_follow
from schemas.control import CommandResult

__all__ = ["CHANGING", "READING", "Dispatcher", "Forbidden", "Sent"]

log = logging.getLogger(__name__)
READING = frozenset({"status", "employees"})  # change nothing the tenant has
CHANGING = frozenset({"activate", "deactivate", "replay", "link", "unlink", "senior"})
# How long the console follows a command's results (a replay reports progress all along).
FOLLOW = {"replay": 6 * 3600.0, "activate": 6 * 3600.0}
DEFAULT_FOLLOW = 120.0
KEEP_FINISHED = 1000

Follow = Callable[[Settings, dict[str, Any]], Awaitable[CommandResult | None]]


class Forbidden(Exception):
    """The account may not send this command."""


async def _follow(settings: Settings, command: dict[str, Any]) -> CommandResult | None:
    # send_and_follow signs (and whatever else the operator side does to a command), sends
    # and reads the answers; its progress lines go nowhere: the results topic has them.
    return await send_and_follow(settings, command,
                                 follow=FOLLOW.get(command["type"], DEFAULT_FOLLOW),
                                 out=io.StringIO())


class Sent:
    """A command on its way: its id at once, its answer when it comes."""

    def __init__(self, command_id: str, kind: str, task: asyncio.Task[CommandResult | None]
                 ) -> None:
        self.command_id = command_id
        self.kind = kind
        self.task = task

    async def answer(self, within: float) -> CommandResult | None:
        """The final answer if it comes within `within` s, else None (it goes on)."""
        with contextlib.suppress(TimeoutError):
            result = await asyncio.wait_for(asyncio.shield(self.task), within)
            return result if result is not None and result.status in FINAL else None
        return None


class Dispatcher:
    def __init__(self, settings: Settings, audit: AuditLog, *, follow: Follow = _follow) -> None:
        if settings.operator_key is None:
            raise SystemExit("CALLSYNC_OPERATOR_KEY is not set: the console cannot sign "
                             "commands (set it to the key the workers have)")
        self.settings = settings
        self.audit = audit
        self.follow = follow
        self.pending: dict[str, Sent] = {}
        # Final answers as send_and_follow returned them: a page can show one before the
        # console's own reading of the results topic got to it.
        self.finished: OrderedDict[str, CommandResult] = OrderedDict()

    def send(self, account: Account, kind: str, tenant_id: str, **fields: Any) -> Sent:
        """Audit, then send; raises Forbidden for a changing command from a viewer."""
        if kind not in READING | CHANGING:
            raise Forbidden(f"unknown command {kind!r}")
        if kind in CHANGING and not account.can_change:
            raise Forbidden(f"{account.name} has the read-only role: {kind} is not allowed")
        command = build_command(kind, tenant_id, operator=f"console:{account.name}", **fields)
        self.audit.sent(command, user=account.name)
        task = asyncio.create_task(self._run(command), name=f"command-{command['command_id']}")
        sent = Sent(command["command_id"], kind, task)
        self.pending[sent.command_id] = sent
        return sent

    async def _run(self, command: dict[str, Any]) -> CommandResult | None:
        result: CommandResult | None = None
        try:
            result = await self.follow(self.settings, command)
            return result
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the broker is unreachable, …: said in the audit
            log.exception("sending %s failed", command["command_id"])
            result = CommandResult.model_validate({
                "command_id": command["command_id"], "tenant_id": command["tenant_id"],
                "type": command["type"], "status": "failed",
                "message": f"the console could not send it: {type(exc).__name__}",
                "at": command["issued_at"]})
            return result
        finally:
            self.audit.answered(command["command_id"], result)
            self.pending.pop(command["command_id"], None)
            if result is not None:
                self.finished[command["command_id"]] = result
                while len(self.finished) > KEEP_FINISHED:
                    self.finished.popitem(last=False)

    async def stop(self) -> None:
        tasks = [sent.task for sent in self.pending.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
