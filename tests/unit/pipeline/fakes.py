"""Fakes of the delivery path's edges for in-process tests: a tenant lane, the outlets."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pipeline.delivery.errorpolicy import DeadLetter
from pipeline.delivery.work import SourceRef, Work

__all__ = ["Diagnosis", "Lane", "Lanes", "Outlets"]


class Diagnosis:
    """A lane's self-diagnosis that only notes what intake reports."""

    def __init__(self) -> None:
        self.senior_manager_id: int | None = None
        self.reported: list[Any] = []

    def configure(self, config: Any, senior_manager_id: int | None) -> None:
        self.senior_manager_id = senior_manager_id

    def report(self, problem: Any) -> None:
        self.reported.append(problem)


class Lane:
    """A tenant lane that takes work; settles it at once unless `holding`."""

    def __init__(self) -> None:
        self.works: list[Work] = []
        self.holding = False
        self.diagnosis = Diagnosis()

    async def submit(self, work: Work) -> None:
        self.works.append(work)
        if not self.holding:
            work.ack()

    @property
    def delivered(self) -> list[str]:
        return [w.event.call_id for w in self.works]


class Lanes:
    def __init__(self) -> None:
        self.lane = Lane()

    def lane_for(self, config: Any) -> Lane:
        return self.lane


class Outlets:
    """The invalid and dead-letter topics as lists; `failing` times the invalid copy fails."""

    def __init__(self) -> None:
        self.invalids: list[dict[str, Any]] = []
        self.dead: list[tuple[Work, list[DeadLetter]]] = []
        self.failing = 0

    async def invalid(self, *, raw: bytes | None, key: bytes | None, source: SourceRef,
                      reason: str, tenant_id: str | None) -> None:
        if self.failing:
            self.failing -= 1
            raise ConnectionError("the producer is gone")
        self.invalids.append({"raw": raw, "key": key, "source": source, "reason": reason,
                              "tenant_id": tenant_id})

    async def dead_letter(self, work: Work, actions: Sequence[DeadLetter]) -> None:
        self.dead.append((work, list(actions)))
