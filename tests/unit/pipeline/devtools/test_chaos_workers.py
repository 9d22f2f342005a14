"""The fault suite's worker roster: a worker stopped on purpose is not an exit of its own."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import pytest

from pipeline.devtools.chaos.workers import Member, Workers
from pipeline.devtools.devstack import WorkerProcess


class Exited:
    """A worker process that exits as soon as it is told to stop; while stopping, the roster's
    watcher looks (as `Workers.watch` does from the event loop while `stop` waits in a thread)."""

    def __init__(self, workers: Workers) -> None:
        self.workers = workers
        self.stopped = False
        self.proc = self

    @property
    def returncode(self) -> int:
        return 0

    def alive(self) -> bool:
        return not self.stopped

    def stop(self) -> int:
        self.stopped = True
        self.workers.check()  # the watcher's turn comes while the stop waits for the exit
        return 0


def test_a_worker_stopped_on_purpose_is_not_counted_as_an_exit_nor_started_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    workers = Workers(base_env={}, workdir=tmp_path)
    started: list[str] = []
    monkeypatch.setattr(workers, "start", started.append)  # no real worker process
    member = Member("w3", {}, tmp_path / "w3.log")
    member.process = cast(WorkerProcess, Exited(workers))
    workers.members["w3"] = member
    workers.stop("w3")
    assert workers.exits == [] and started == [] and member.process is None
