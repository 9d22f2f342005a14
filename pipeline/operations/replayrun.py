"""One tenant's replay read through: its partitions up to their reach, into the tenant's lane."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import ValidationError

from pipeline.delivery.health import TenantHealth
from pipeline.delivery.intake import TenantDirectory, admit
from pipeline.delivery.lanes import LaneRegistry
from pipeline.delivery.tenantstate import ReplayProgress, StateStore
from pipeline.delivery.work import SourceRef, Work
from pipeline.observability.metrics import REPLAY_REMAINING, REPLAY_SCANNED, REPLAY_SUBMITTED
from pipeline.operations.window import ReplayWindow
from schemas.call_event import CallEvent
from schemas.control import CommandResult

__all__ = ["ReplayHost", "ReplayReader", "report_replay"]

# The manager's logger: a replay logs under one name, wherever the line is.
log = logging.getLogger("pipeline.operations.replay")
SAVE_EVERY = 1.0


class ReplayHost(Protocol):
    """The replay manager as a run sees it; the worker may swap `owns` and `steady` meanwhile."""

    calls_topic: str
    directory: TenantDirectory
    lanes: LaneRegistry
    states: StateStore
    report: Callable[[CommandResult], Awaitable[object]]
    clock: Callable[[], datetime]
    owns: Callable[[str], bool]
    steady: Callable[[], bool]

    def read_consumer(self) -> AIOKafkaConsumer: ...


class _Tracker:
    """Offsets of one partition handed to delivery and not yet settled."""

    def __init__(self, start: int) -> None:
        self.read_to = start
        self.pending: set[int] = set()

    def next(self) -> int:
        return min(self.pending) if self.pending else self.read_to


async def report_replay(host: ReplayHost, tenant_id: str, progress: ReplayProgress, status: str,
                        message: str) -> None:
    await host.report(CommandResult.model_validate({
        "command_id": progress.command_id, "tenant_id": tenant_id, "type": "replay",
        "status": status, "message": message, "at": host.clock(),
        "data": {"scanned": progress.scanned, "submitted": progress.submitted,
                 "settled": progress.settled, "remaining": progress.remaining,
                 "window": progress.window}}))


class ReplayReader:
    """Reads a tenant's replay on from its saved offsets, for the manager `host`."""

    def __init__(self, host: ReplayHost) -> None:
        self.host = host

    async def read(self, tenant_id: str, progress: ReplayProgress, config: Any) -> None:
        """Read every partition up to its reach, which live events held back for the replay
        move on; done once all is read and settled and the reach stands still."""
        window = ReplayWindow.from_dict(progress.window)
        lane = self.host.lanes.lane_for(config)
        trackers = {int(p): _Tracker(o) for p, o in progress.next.items()}
        consumer = self.host.read_consumer()
        await consumer.start()
        last_save = time.monotonic()
        finished = False
        try:
            tps = {p: TopicPartition(self.host.calls_topic, p) for p in trackers}
            consumer.assign(list(tps.values()))
            for p, tp in tps.items():
                consumer.seek(tp, trackers[p].read_to)
            await report_replay(self.host, tenant_id, progress, "progress", "replaying")
            while True:
                if not self.host.owns(tenant_id):
                    log.info("replay %s of %s stops here: the tenant moved to another worker",
                             progress.command_id, tenant_id)
                    return
                if not self.host.steady():
                    await asyncio.sleep(0.2)
                    continue
                open_tps = [tps[p] for p, t in trackers.items()
                            if t.read_to < progress.reach_of(str(p))]
                if open_tps:
                    batch = await consumer.getmany(*open_tps, timeout_ms=500)
                    if not self.host.steady():  # it changed while fetching: read these again
                        for tp in batch:
                            consumer.seek(tp, trackers[tp.partition].read_to)
                        continue
                    # The mapping as it is now, each fetch: an operator's change applies.
                    mapping = self.host.directory.mapping(tenant_id)
                    for tp, messages in batch.items():
                        tracker = trackers[tp.partition]
                        if await self._take(tp, messages, tenant_id, window, config, mapping,
                                            tracker, progress, lane):
                            # Read past the reach: from where it stopped, once the reach moves.
                            consumer.seek(tp, tracker.read_to)
                elif any(t.pending for t in trackers.values()):
                    await asyncio.sleep(0.2)
                else:
                    # Nothing pending and the reach stands: done, in this very step, so no
                    # live event can be held back for a replay that has just ended.
                    self._save(tenant_id, progress, trackers)
                    self._finish(tenant_id, progress)
                    finished = True
                    break
                if time.monotonic() - last_save > SAVE_EVERY:
                    self._save(tenant_id, progress, trackers)
                    await report_replay(self.host, tenant_id, progress, "progress", "replaying")
                    last_save = time.monotonic()
        finally:
            if not finished:
                self._save(tenant_id, progress, trackers)
            await consumer.stop()
        await report_replay(self.host, tenant_id, progress, "done",
                            f"replayed {progress.submitted} events of {progress.scanned} read")

    async def _take(self, tp: TopicPartition, messages: list[Any], tenant_id: str,
                    window: ReplayWindow, config: Any, mapping: Any, tracker: _Tracker,
                    progress: ReplayProgress, lane: Any) -> bool:
        """Hand the tenant's records of a fetch to its lane; True if it read past the reach."""
        partition = str(tp.partition)
        key = tenant_id.encode()
        for message in messages:
            if message.offset < tracker.read_to:
                continue
            if message.offset >= progress.reach_of(partition):
                return True
            progress.scanned += 1
            REPLAY_SCANNED.labels(tenant_id).inc()
            tracker.read_to = message.offset + 1
            if message.key != key or message.value is None:
                continue
            # Past where the replay began are live events held back for it: all of them go.
            held = message.offset >= progress.ends.get(partition, 0)
            work = self._work(message, tenant_id, window, config, mapping, tracker, progress,
                              held=held)
            if work is not None:
                tracker.pending.add(message.offset)
                progress.submitted += 1
                REPLAY_SUBMITTED.labels(tenant_id).inc()
                await lane.submit(work)
                # A fetch holds hundreds of records, each parsed and planned here: the lanes'
                # waits on the producer (a sync before a create) are not held up behind them.
                await asyncio.sleep(0)
        return False

    def _work(self, message: Any, tenant_id: str, window: ReplayWindow, config: Any,
              mapping: Any, tracker: _Tracker, progress: ReplayProgress, *,
              held: bool = False) -> Work | None:
        try:
            event = CallEvent.model_validate_json(message.value)
        except ValidationError:
            return None  # it went to the invalid topic when it first arrived
        if event.tenant_id != tenant_id or not (held or window.contains(event.started_at)):
            return None
        offset = message.offset

        def settled() -> None:
            tracker.pending.discard(offset)
            progress.settled += 1

        return admit(event, config=config, mapping=mapping, directory=self.host.directory,
                     lanes=self.host.lanes, raw=message.value, key=message.key,
                     source=SourceRef(message.topic, message.partition, offset), ack=settled,
                     replayed=True)

    def _save(self, tenant_id: str, progress: ReplayProgress,
              trackers: dict[int, _Tracker]) -> None:
        progress.next = {str(p): t.next() for p, t in trackers.items()}
        REPLAY_REMAINING.labels(tenant_id).set(progress.remaining)
        self.host.states.update(tenant_id, replay=progress)

    def _finish(self, tenant_id: str, progress: ReplayProgress) -> None:
        """Done: the dead letters parked up to the re-activation are settled."""
        progress.done = True
        progress.finished_at = self.host.clock()
        REPLAY_REMAINING.labels(tenant_id).set(0)
        self.host.states.update(tenant_id, replay=progress)
        TenantHealth(self.host.states, tenant_id, clock=self.host.clock).settled()
