"""Replay in process: the window, live events held back for it, resuming, settling."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import cast

import pytest

from pipeline.delivery.lanes import LaneRegistry
from pipeline.delivery.tenantstate import ReplayProgress
from pipeline.delivery.work import SourceRef
from pipeline.operations import replay
from pipeline.operations.replay import ReplayManager
from pipeline.operations.window import ReplayWindow
from schemas.control import CommandResult
from tests.unit.pipeline.fakes import Lanes
from tests.unit.pipeline.operations.desk import SENIOR, Portal, Worker
from tests.unit.pipeline.operations.fakekafka import TOPIC, CallLog, call_json
from tests.waiting import wait_until

NOW = datetime(2024, 3, 13, 10, 0, tzinfo=UTC)
WINDOW = ReplayWindow(NOW - timedelta(days=2), NOW)


class Replays:
    """A replay manager over an activated tenant, the in-memory calls topic and a lane."""

    def __init__(self, worker: Worker, log: CallLog) -> None:
        self.worker = worker
        self.log = log
        self.lanes = Lanes()
        self.reports: list[CommandResult] = []
        self.manager = self.make()

    def make(self) -> ReplayManager:
        async def report(result: CommandResult) -> None:
            self.reports.append(result)

        return ReplayManager(bootstrap_servers="unused", calls_topic=TOPIC,
                             directory=self.worker.directory,
                             lanes=cast(LaneRegistry, self.lanes), states=self.worker.states,
                             report=report, clock=lambda: self.worker.now[0])

    @property
    def progress(self) -> ReplayProgress:
        progress = self.worker.states.get("acme").replay
        assert progress is not None
        return progress

    async def finished(self) -> ReplayProgress:
        await wait_until(lambda: self.progress.done, "the replay to finish",
                         detail=lambda: repr(self.progress))
        return self.progress


@pytest.fixture
def log(monkeypatch: pytest.MonkeyPatch) -> Iterator[CallLog]:
    calls = CallLog()
    monkeypatch.setattr(replay, "AIOKafkaConsumer", calls.consumer)
    yield calls


@pytest.fixture
async def replays(log: CallLog) -> Replays:
    worker = Worker(Portal(), clock=[NOW])
    await worker.set_up()
    return Replays(worker, log)


def put(log: CallLog, partition: int, call_id: str, at: datetime, tenant: str = "acme") -> int:
    return log.append(partition, tenant.encode(), call_json(call_id, at, tenant), at)


async def test_a_replay_delivers_the_tenant_s_calls_of_the_window_only(
        replays: Replays, log: CallLog) -> None:
    put(log, 0, "long-ago", NOW - timedelta(days=9))  # before the lookback: never read
    put(log, 0, "early", WINDOW.start - timedelta(minutes=30))  # read (lookback), outside
    put(log, 0, "in-1", WINDOW.start + timedelta(hours=1))
    put(log, 0, "other", WINDOW.start + timedelta(hours=1), tenant="globex")
    log.append(0, b"acme", b"{not json", WINDOW.start + timedelta(hours=2))
    put(log, 1, "in-2", NOW - timedelta(hours=1))
    put(log, 1, "in-3", NOW - timedelta(minutes=1))
    await replays.manager.start("acme", "r-1", WINDOW)
    progress = await replays.finished()
    assert sorted(replays.lanes.lane.delivered) == ["in-1", "in-2", "in-3"]
    assert all(w.replayed and w.lease is None for w in replays.lanes.lane.works)
    assert (progress.scanned, progress.submitted, progress.settled) == (6, 3, 3)
    assert progress.ends == {"0": 5, "1": 2} and progress.next == {"0": 5, "1": 2}
    assert progress.finished_at == NOW and progress.remaining == 0
    state = replays.worker.states.get("acme")
    assert state.parked == 0 and state.settled_at == NOW
    done = replays.reports[-1]
    assert (done.command_id, done.status, done.message) == (
        "r-1", "done", "replayed 3 events of 6 read")


async def test_replayed_calls_come_in_as_live_ones_do_senior_manager_and_diagnosis(
        replays: Replays, log: CallLog) -> None:
    """With no live call at all, the lane learns the senior manager and an unmapped extension
    from the replay (intake.admit is the one way in for both)."""
    put(log, 0, "in-1", WINDOW.start + timedelta(hours=1))  # emp-1 (ext 101) is linked to nobody
    await replays.manager.start("acme", "r-1", WINDOW)
    await replays.finished()
    diagnosis = replays.lanes.lane.diagnosis
    assert diagnosis.senior_manager_id == SENIOR
    [problem] = diagnosis.reported
    assert (problem.kind, problem.subject) == ("unmapped_extension", "101")
    assert [w.replayed for w in replays.lanes.lane.works] == [True]


async def test_the_end_is_fixed_at_the_start_and_live_events_after_it_wait_for_it(
        replays: Replays, log: CallLog) -> None:
    put(log, 0, "old", NOW - timedelta(hours=5))
    replays.lanes.lane.holding = True
    await replays.manager.start("acme", "r-1", WINDOW)
    await wait_until(lambda: replays.lanes.lane.delivered == ["old"], "the replay's first call")
    assert replays.manager.recovering("acme")
    # A live event arrives: past the window's end, but the tenant's order puts it after "old".
    offset = put(log, 0, "live", NOW + timedelta(hours=1))
    assert replays.manager.hold_back("acme", SourceRef(TOPIC, 0, offset))
    assert replays.progress.reach == {"0": 2}, "saved before the live offset is committed"
    assert not replays.manager.hold_back("acme", SourceRef(TOPIC, 7, 0)), "not its partition"
    replays.lanes.lane.works[0].ack()
    await wait_until(lambda: replays.lanes.lane.delivered == ["old", "live"],
                     "the held live event, delivered by the replay")
    replays.lanes.lane.works[1].ack()
    progress = await replays.finished()
    assert progress.submitted == 2 and not replays.manager.recovering("acme")
    assert not replays.manager.hold_back("acme", SourceRef(TOPIC, 0, offset + 1))


async def test_a_replay_is_done_only_once_all_it_handed_out_is_settled(
        replays: Replays, log: CallLog) -> None:
    for n in range(4):
        put(log, 0, f"c{n}", NOW - timedelta(hours=4 - n))
    replays.lanes.lane.holding = True
    await replays.manager.start("acme", "r-1", WINDOW)
    lane = replays.lanes.lane
    await wait_until(lambda: len(lane.works) == 4, "all four handed to the lane")
    for work in (lane.works[0], lane.works[2], lane.works[3]):
        work.ack()  # c1 is still in flight
    replays.manager.running["acme"].cancel()  # the worker stops here; it saves on the way
    await wait_until(lambda: replays.manager.running["acme"].done(), "the replay task to stop")
    progress = replays.progress
    assert not progress.done and progress.next == {"0": 1, "1": 0}, "from the first unsettled"
    assert progress.settled == 3 and progress.remaining == 3


async def test_a_restarted_worker_resumes_an_unfinished_replay_from_its_saved_offsets(
        replays: Replays, log: CallLog) -> None:
    for n in range(5):
        put(log, 0, f"c{n}", NOW - timedelta(hours=5 - n))
    replays.worker.states.update("acme", replay=ReplayProgress(
        command_id="r-1", window=WINDOW.as_dict(), ends={"0": 5, "1": 0},
        next={"0": 3, "1": 0}, started_at=NOW))
    restarted = replays.make()
    assert restarted.recovering("acme"), "live events wait before it even runs again"
    assert restarted.resume(lambda tenant: tenant != "acme") == []
    assert restarted.resume(lambda tenant: True) == ["acme"]
    assert restarted.resume(lambda tenant: True) == [], "running already"
    progress = await replays.finished()
    assert replays.lanes.lane.delivered == ["c3", "c4"], "nothing delivered twice"
    assert progress.next == {"0": 5, "1": 0}
    assert restarted.resume(lambda tenant: True) == [], "done: nothing to resume"


async def test_an_outage_replay_starts_at_the_first_parked_offset_whatever_the_time(
        replays: Replays, log: CallLog) -> None:
    for n in range(4):
        put(log, 1, f"c{n}", NOW - timedelta(days=30 - n))  # long before any window
    replays.worker.states.update("acme", outage_offsets={"1": 2})
    assert await replays.manager.start_outage_replay("acme")
    assert replays.worker.states.get("acme").outage_offsets == {}
    progress = await replays.finished()
    assert progress.command_id == "outage-acme-20240313T100000"
    assert replays.lanes.lane.delivered == ["c2", "c3"]
    assert progress.ends == {"0": 0, "1": 4}


async def test_a_replay_stops_when_its_tenant_moves_to_another_worker(
        replays: Replays, log: CallLog) -> None:
    put(log, 0, "c0", NOW - timedelta(hours=1))
    replays.manager.owns = lambda tenant: False
    await replays.manager.start("acme", "r-1", WINDOW)
    await wait_until(lambda: replays.manager.running["acme"].done(), "the replay to stop")
    assert replays.lanes.lane.works == [] and not replays.progress.done
    assert replays.progress.next == {"0": 0, "1": 0}


async def test_a_replay_reads_nothing_while_the_worker_is_not_steady(
        replays: Replays, log: CallLog) -> None:
    """A rebalance's table recovery can bring a tenant's integration back before its mapping;
    a missed call planned then had no senior manager, and its task was parked (NoPerformer:
    CI's rebalance scenario lost one task so)."""
    at = NOW - timedelta(hours=1)
    missed = json.loads(call_json("missed-1", at))
    missed |= {"direction": "in", "status": "no_answer", "talk_seconds": 0, "employee": None}
    log.append(0, b"acme", json.dumps(missed).encode(), at)
    mapping = replays.worker.mappings.pop("acme")  # recovered so far: the integration only
    steady, asked = [False], [0]

    def is_steady() -> bool:
        asked[0] += 1
        return steady[0]

    replays.manager.steady = is_steady
    await replays.manager.start("acme", "r-1", WINDOW)
    await wait_until(lambda: asked[0] >= 2, "the replay to hold off once and ask again")
    assert replays.lanes.lane.works == [] and replays.progress.scanned == 0
    replays.worker.mappings["acme"] = mapping
    steady[0] = True
    await replays.finished()
    (work,) = replays.lanes.lane.works
    assert work.plan.task is not None and work.plan.task.senior_manager_id == SENIOR
