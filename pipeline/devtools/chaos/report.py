"""What a chaos scenario found, and the table the CLI prints."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pipeline.devtools.chaos.golden import KINDS, Tally

__all__ = ["ScenarioReport", "table"]


@dataclass
class ScenarioReport:
    scenario: str
    events: int
    tenants: int
    seconds: float = 0.0  # wall time of the whole scenario, set-up included
    tallies: dict[str, Tally] = field(default_factory=lambda: {k: Tally() for k in KINDS})
    hostile: int = 0  # hostile records published
    hostile_missing: int = 0  # hostile records not on the invalid topic with a reason
    dead_key_requests: int = 0  # answers 'Wrong "apiKey" value.' to a revoked key
    dead_key_allowed: int = 0
    converge_seconds: float | None = None  # after the fault ended; None: never converged
    worker_exits: list[str] = field(default_factory=list)
    kills: int = 0  # SIGKILLs the scenario sent (not exits)
    agent_crashes: dict[str, int] = field(default_factory=dict)
    settled: bool = False  # the group's commit points reached the end of the call topic
    failed_checks: list[str] = field(default_factory=list)  # the scenario's own checks
    error: str | None = None  # the scenario could not be carried out
    details: dict[str, Any] = field(default_factory=dict)

    def total(self, what: str) -> int:
        return sum(getattr(t, what) for t in self.tallies.values())

    @property
    def lost(self) -> int:
        return self.total("lost") + self.hostile_missing

    @property
    def crashes(self) -> int:
        return sum(self.agent_crashes.values())

    @property
    def passed(self) -> bool:
        return (self.error is None and self.settled and self.converge_seconds is not None
                and not self.lost and not self.total("duplicated")
                and not self.total("misattributed") and not self.total("extra")
                and not self.worker_exits and not self.crashes
                and self.dead_key_requests <= self.dead_key_allowed
                and not self.failed_checks)

    def problems(self) -> list[str]:
        """One line per thing that failed, for the table's footnotes and for assertions."""
        lines = [f"error: {self.error}"] if self.error else []
        for kind, tally in self.tallies.items():
            if not tally.clean:
                lines.append(f"{kind}: lost {tally.lost}, duplicated {tally.duplicated}, "
                             f"misattributed {tally.misattributed}, extra {tally.extra} of "
                             f"{tally.expected}; e.g. {'; '.join(tally.examples[:3])}")
        if self.hostile_missing:
            lines.append(f"hostile records not on the invalid topic: {self.hostile_missing} "
                         f"of {self.hostile}: {self.details.get('hostile_missing', [])[:5]}")
        if not self.settled:
            lines.append(f"the commit points did not reach the end of the call topic "
                         f"(lag {self.details.get('final_lag')})")
        if self.converge_seconds is None and not self.error:
            lines.append("never converged to the golden")
        if self.worker_exits:
            lines.append(f"worker exits: {self.worker_exits}")
        if self.crashes:
            lines.append(f"agent crashes: {self.agent_crashes}: "
                         f"{self.details.get('crash_lines', [])[:2]}")
        if self.dead_key_requests > self.dead_key_allowed:
            lines.append(f"{self.dead_key_requests} requests to a dead key "
                         f"(at most {self.dead_key_allowed} allowed)")
        return lines + self.failed_checks

    def as_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario, "events": self.events, "tenants": self.tenants,
            "seconds": round(self.seconds, 1), "passed": self.passed,
            "lost": self.lost, "duplicated": self.total("duplicated"),
            "misattributed": self.total("misattributed"), "extra": self.total("extra"),
            "per_kind": {k: t.as_dict() for k, t in self.tallies.items()},
            "hostile": self.hostile, "hostile_missing": self.hostile_missing,
            "dead_key_requests": self.dead_key_requests,
            "dead_key_allowed": self.dead_key_allowed,
            "converge_seconds": None if self.converge_seconds is None
            else round(self.converge_seconds, 1),
            "worker_exits": self.worker_exits, "kills": self.kills,
            "agent_crashes": self.agent_crashes, "settled": self.settled,
            "failed_checks": self.failed_checks, "error": self.error,
            "problems": self.problems(), "details": self.details,
        }


COLUMNS = ["scenario", "events", "lost", "duplicated", "misattributed", "extra",
           "dead-key requests", "converge s", "worker exits", "agent crashes", "seconds",
           "result"]


def _row(r: ScenarioReport) -> list[str]:
    converge = "never" if r.converge_seconds is None else f"{r.converge_seconds:.1f}"
    return [r.scenario, f"{r.events}" + (f"+{r.hostile}h" if r.hostile else ""), str(r.lost),
            str(r.total("duplicated")), str(r.total("misattributed")), str(r.total("extra")),
            str(r.dead_key_requests), converge, str(len(r.worker_exits)), str(r.crashes),
            f"{r.seconds:.0f}", "PASS" if r.passed else "FAIL"]


def table(reports: list[ScenarioReport], *, as_json: bool = False) -> str:
    if as_json:
        return json.dumps([r.as_dict() for r in reports], indent=2, default=str)
    rows = [COLUMNS] + [_row(r) for r in reports]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
             for row in rows]
    for r in reports:
        for problem in r.problems():
            lines.append(f"  {r.scenario}: {problem}")
    return "\n".join(lines)
