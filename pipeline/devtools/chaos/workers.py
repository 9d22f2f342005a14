"""The worker processes of a chaos run: started, killed, stopped, watched for exits and crashes."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.devtools.devstack import WorkerProcess
from pipeline.devtools.localkafka import free_port

__all__ = ["CRASH_LINES", "Workers", "agent_crashes"]

# What Faust and mode log when an agent (or any service) dies or is restarted:
# faust/agents/agent.py `_execute_actor` logs "Restarting on rebalance" for an actor cancelled
# outside a stop and calls `aref.crash(exc)`, which is mode's `Service.crash`:
# "Crashed reason=%r"; mode's supervisors then log "Restarting dead %r! Last crash reason: %r",
# "Max restarts exceeded: %r" or "Giving up on ...".
CRASH_LINES = {
    "crashed": re.compile(r"Crashed reason="),
    "restarting_on_rebalance": re.compile(r"Restarting on rebalance"),
    "restarting_dead": re.compile(r"Restarting dead "),
    "max_restarts": re.compile(r"Max restarts exceeded"),
    "giving_up": re.compile(r"Giving up on "),
}


def agent_crashes(logs: list[Path]) -> tuple[Counter[str], list[str]]:
    """Per kind, the crash and restart lines of the worker logs, and the first few of them."""
    found: Counter[str] = Counter()
    examples: list[str] = []
    for path in logs:
        if not path.exists():
            continue
        for line in path.read_text(errors="replace").splitlines():
            for kind, pattern in CRASH_LINES.items():
                if pattern.search(line):
                    found[kind] += 1
                    if len(examples) < 5:
                        examples.append(f"{path.name}: {line.strip()[:300]}")
    return found, examples


@dataclass
class Member:
    name: str
    env: dict[str, str]
    log: Path
    process: WorkerProcess | None = None


@dataclass
class Workers:
    """Named worker processes of one consumer group, each with its own port, data and log."""

    base_env: dict[str, str]
    workdir: Path
    members: dict[str, Member] = field(default_factory=dict)
    exits: list[str] = field(default_factory=list)  # died without being told to
    stop_codes: list[str] = field(default_factory=list)  # non-zero codes of requested stops
    kills: int = 0
    starts: int = 0

    def _member(self, name: str) -> Member:
        if name not in self.members:
            env = {**self.base_env, "CALLSYNC_METRICS_PORT": str(free_port()),
                   "CALLSYNC_DATA_DIR": str(self.workdir / f"{name}-data")}
            self.members[name] = Member(name, env, self.workdir / f"{name}.log")
        return self.members[name]

    def start(self, name: str) -> None:
        member = self._member(name)
        if member.process is not None and member.process.alive():
            raise RuntimeError(f"worker {name} is already running")
        member.process = WorkerProcess(member.env, member.log)
        member.process.start()
        self.starts += 1

    def kill(self, name: str) -> None:
        """SIGKILL: a crash we caused, not an exit."""
        member = self.members[name]
        if member.process is None or not member.process.alive():
            raise RuntimeError(f"worker {name} is not running: cannot kill it")
        member.process.kill()
        member.process = None
        self.kills += 1

    def stop(self, name: str) -> None:
        """SIGTERM and wait: a worker leaving the group on purpose."""
        member = self.members[name]
        process, member.process = member.process, None  # before SIGTERM: not an exit to `check`
        if process is None:
            return
        code = process.stop()
        if code not in (0, None):
            self.stop_codes.append(f"{name}: exit {code} after SIGTERM")

    def stop_all(self) -> None:
        for name in list(self.members):
            self.stop(name)

    def running(self) -> list[str]:
        return [n for n, m in self.members.items() if m.process is not None and m.process.alive()]

    def metrics_port(self, name: str) -> int:
        return int(self._member(name).env["CALLSYNC_METRICS_PORT"])

    def logs(self) -> list[Path]:
        return [m.log for m in self.members.values()]

    def check(self) -> None:
        """A worker that died on its own is counted (with its exit code) and started again."""
        for name, member in self.members.items():
            proc = member.process
            if proc is None or proc.proc is None or proc.alive():
                continue
            self.exits.append(f"{name}: exit {proc.proc.returncode}")
            member.process = None
            self.start(name)

    async def watch(self, interval: float = 0.5) -> None:
        while True:
            self.check()
            await asyncio.sleep(interval)

    def tail(self, lines: int = 40) -> str:
        parts = []
        for member in self.members.values():
            if member.log.exists():
                text = member.log.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {member.name} ---\n" + "\n".join(text))
        return "\n".join(parts)
