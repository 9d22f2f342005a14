"""Replaying a tenant's calls of a window through the same planning and delivery, resumably."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import ValidationError

from pipeline.delivery.health import Condition, TenantHealth
from pipeline.delivery.intake import TenantDirectory
from pipeline.delivery.lanes import LaneRegistry
from pipeline.delivery.planning import plan_call
from pipeline.delivery.steps import SourceRef, Work
from pipeline.delivery.tenantstate import ReplayProgress, StateStore
from pipeline.observability.metrics import REPLAY_REMAINING, REPLAY_SCANNED, REPLAY_SUBMITTED
from pipeline.operations.window import ReplayWindow
from schemas.call_event import CallEvent
from schemas.control import CommandResult

__all__ = ["ReplayManager"]

log = logging.getLogger(__name__)
# Records are looked up by their timestamp; a producer's clock may run behind the call's.
LOOKBACK_MS = 3_600_000
SAVE_EVERY = 1.0
# After an outage the start is an offset, not a time: the window lets every event through.
SINCE_EVER = datetime(2000, 1, 1, tzinfo=UTC)


class _Tracker:
    """Offsets of one partition handed to delivery and not yet settled."""

    def __init__(self, start: int) -> None:
        self.read_to = start
        self.pending: set[int] = set()

    def next(self) -> int:
        return min(self.pending) if self.pending else self.read_to


class ReplayManager:
    def __init__(self, *, bootstrap_servers: str, calls_topic: str, directory: TenantDirectory,
                 lanes: LaneRegistry, states: StateStore,
                 report: Callable[[CommandResult], Awaitable[object]],
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 client_options: Mapping[str, Any] | None = None) -> None:
        # How to reach the brokers (TLS, SASL): KafkaSettings.client_options().
        self.client_options = dict(client_options or {"bootstrap_servers": bootstrap_servers})
        self.calls_topic = calls_topic
        self.directory = directory
        self.lanes = lanes
        self.states = states
        self.report = report
        self.clock = clock
        self.running: dict[str, asyncio.Task[None]] = {}
        # The progress of each replay running here, shared with `hold_back`.
        self._active: dict[str, ReplayProgress] = {}
        # Does this worker own the tenant (its partition of the call topic)? Set by the worker.
        self.owns: Callable[[str], bool] = lambda tenant_id: True
        # Is the worker steady (no rebalance, tables recovered)? Set by the worker. A replay
        # reads nothing while it is not: the tenant's mapping may not be back yet.
        self.steady: Callable[[], bool] = lambda: True

    async def start(self, tenant_id: str, command_id: str, window: ReplayWindow, *,
                    from_offsets: Mapping[str, int] | None = None) -> None:
        """Fix the start and end offsets now (end: what was on the topic at re-activation).
        `from_offsets` (partition -> offset) starts there instead of at the window's start."""
        consumer = AIOKafkaConsumer(**self.client_options, enable_auto_commit=False)
        await consumer.start()
        try:
            tps = await self._partitions(consumer)
            found = {} if from_offsets is not None else await consumer.offsets_for_times(
                {tp: max(0, window.start_ms - LOOKBACK_MS) for tp in tps})
            ends = await consumer.end_offsets(tps)
            # No await from the end offsets to the saved progress: every live event read after
            # them is held back for this replay (see `hold_back`), none slips past it.
            if from_offsets is None:
                starts = {tp: (found[tp].offset if found.get(tp) is not None else ends[tp])
                          for tp in tps}
            else:
                starts = {tp: min(from_offsets.get(str(tp.partition), ends[tp]), ends[tp])
                          for tp in tps}
            progress = ReplayProgress(
                command_id=command_id, window=window.as_dict(),
                ends={str(tp.partition): ends[tp] for tp in tps},
                next={str(tp.partition): starts[tp] for tp in tps}, started_at=self.clock())
            self.states.update(tenant_id, replay=progress)
        finally:
            await consumer.stop()
        self._spawn(tenant_id)

    async def _partitions(self, consumer: AIOKafkaConsumer) -> list[TopicPartition]:
        for _ in range(50):
            partitions = consumer.partitions_for_topic(self.calls_topic)
            if partitions:
                return [TopicPartition(self.calls_topic, p) for p in sorted(partitions)]
            await consumer._client.force_metadata_update()
            await asyncio.sleep(0.1)
        raise RuntimeError(f"topic {self.calls_topic} has no partitions")

    def _spawn(self, tenant_id: str) -> None:
        task = self.running.get(tenant_id)
        if task is None or task.done():
            self.running[tenant_id] = asyncio.create_task(self._guarded(tenant_id),
                                                          name=f"replay-{tenant_id}")

    def resume(self, owns: Callable[[str], bool]) -> list[str]:
        """Start the unfinished replays of tenants this worker owns (after a crash, a move)."""
        resumed = []
        for tenant_id in self.states.tenants():
            if "|" in tenant_id or not owns(tenant_id):
                continue
            progress = self.states.get(tenant_id).replay
            running = self.running.get(tenant_id)
            if progress is not None and not progress.done and (running is None or
                                                               running.done()):
                log.info("resuming the replay %s of %s", progress.command_id, tenant_id)
                self._spawn(tenant_id)
                resumed.append(tenant_id)
        return resumed

    async def replay_outages(self, owns: Callable[[str], bool]) -> list[str]:
        """Outage replays a crash cut short: the portal answered, the replay did not start."""
        started = []
        for tenant_id in self.states.tenants():
            if "|" in tenant_id or not owns(tenant_id):
                continue
            health = self._health(tenant_id).now
            running = self.running.get(tenant_id)
            if not health.outage_offsets or health.condition is not Condition.ACTIVE or (
                    running is not None and not running.done()):
                continue
            if await self.start_outage_replay(tenant_id):
                started.append(tenant_id)
        return started

    # -- the tenant's order through a recovery ------------------------------------------------

    def recovering(self, tenant_id: str) -> bool:
        """A replay of the tenant runs (or is due to resume): its live events wait for it."""
        if tenant_id in self._active:
            return True
        stored = self.states.stored(tenant_id)
        replay = stored.get("replay") if stored else None
        return isinstance(replay, dict) and not replay.get("done")

    def hold_back(self, tenant_id: str, source: SourceRef) -> bool:
        """A live event of a recovering tenant: the replay reads on to it and delivers it in
        the tenant's order, so the live consumer may settle it. False if no replay takes it."""
        progress = self._active.get(tenant_id) or self.states.get(tenant_id).replay
        if progress is None or progress.done:
            return False
        partition = str(source.partition)
        if partition not in progress.ends:
            return False
        if source.offset >= progress.reach_of(partition):
            progress.reach[partition] = source.offset + 1
            # Durable before the live offset is committed: the commit flushes the producer.
            self.states.update(tenant_id, replay=progress)
        return True

    async def start_outage_replay(self, tenant_id: str) -> bool:
        """The portal answers again: replay, from the first parked offset on, what its outage
        parked; live events wait for it from now on. False if the replay could not start."""
        health, replay = self._health(tenant_id), self.states.get(tenant_id).replay
        offsets = dict(health.now.outage_offsets)
        if not offsets:
            return True
        if replay is not None and not replay.done:
            return True  # a running replay reads on over what the outage parked
        now = self.clock()
        command_id = f"outage-{tenant_id}-{now:%Y%m%dT%H%M%S}"
        log.warning("the portal of %s answers again: replaying what its outage parked "
                    "(%s, from offsets %s)", tenant_id, command_id, offsets)
        try:
            await self.start(tenant_id, command_id,
                             ReplayWindow(SINCE_EVER, now + timedelta(days=1)),
                             from_offsets=offsets)
        except Exception:
            log.exception("could not start the outage replay of %s; trying again", tenant_id)
            return False
        health.outage_replay_started()
        return True

    def _health(self, tenant_id: str) -> TenantHealth:
        return TenantHealth(self.states, tenant_id, clock=self.clock)

    async def stop(self) -> None:
        for task in self.running.values():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _guarded(self, tenant_id: str) -> None:
        try:
            await self._run(tenant_id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("replay of %s failed; it resumes from its saved offsets", tenant_id)
            progress = self.states.get(tenant_id).replay
            if progress is not None:
                await self._report(tenant_id, progress, "progress",
                                   f"interrupted ({type(exc).__name__}); resuming")

    async def _report(self, tenant_id: str, progress: ReplayProgress, status: str,
                      message: str) -> None:
        await self.report(CommandResult.model_validate({
            "command_id": progress.command_id, "tenant_id": tenant_id, "type": "replay",
            "status": status, "message": message, "at": self.clock(),
            "data": {"scanned": progress.scanned, "submitted": progress.submitted,
                     "settled": progress.settled, "remaining": progress.remaining,
                     "window": progress.window}}))

    async def _run(self, tenant_id: str) -> None:
        progress = self.states.get(tenant_id).replay
        config = self.directory.config(tenant_id)
        if progress is None or progress.done or config is None:
            return
        self._active[tenant_id] = progress
        try:
            await self._read(tenant_id, progress, config)
        finally:
            self._active.pop(tenant_id, None)

    async def _read(self, tenant_id: str, progress: ReplayProgress, config: Any) -> None:
        """Read every partition up to its reach, which live events held back for the replay
        move on; done once all is read and settled and the reach stands still."""
        window = ReplayWindow.from_dict(progress.window)
        lane = self.lanes.lane_for(config)
        trackers = {int(p): _Tracker(o) for p, o in progress.next.items()}
        consumer = AIOKafkaConsumer(**self.client_options, enable_auto_commit=False,
                                    max_poll_records=500)
        await consumer.start()
        last_save = time.monotonic()
        finished = False
        try:
            tps = {p: TopicPartition(self.calls_topic, p) for p in trackers}
            consumer.assign(list(tps.values()))
            for p, tp in tps.items():
                consumer.seek(tp, trackers[p].read_to)
            await self._report(tenant_id, progress, "progress", "replaying")
            while True:
                if not self.owns(tenant_id):
                    log.info("replay %s of %s stops here: the tenant moved to another worker",
                             progress.command_id, tenant_id)
                    return
                if not self.steady():
                    await asyncio.sleep(0.2)
                    continue
                open_tps = [tps[p] for p, t in trackers.items()
                            if t.read_to < progress.reach_of(str(p))]
                if open_tps:
                    batch = await consumer.getmany(*open_tps, timeout_ms=500)
                    if not self.steady():  # it changed while fetching: read these again
                        for tp in batch:
                            consumer.seek(tp, trackers[tp.partition].read_to)
                        continue
                    # The mapping as it is now, each fetch: an operator's change applies.
                    mapping = self.directory.mapping(tenant_id)
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
                    await self._report(tenant_id, progress, "progress", "replaying")
                    last_save = time.monotonic()
        finally:
            if not finished:
                self._save(tenant_id, progress, trackers)
            await consumer.stop()
        await self._report(tenant_id, progress, "done",
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
        plan = plan_call(event, config, mapping)
        if plan.is_empty:
            return None
        offset = message.offset

        def settled() -> None:
            tracker.pending.discard(offset)
            progress.settled += 1

        return Work(event=event, plan=plan, raw=message.value, key=message.key,
                    source=SourceRef(message.topic, message.partition, offset), ack=settled,
                    replayed=True)

    def _save(self, tenant_id: str, progress: ReplayProgress,
              trackers: dict[int, _Tracker]) -> None:
        progress.next = {str(p): t.next() for p, t in trackers.items()}
        REPLAY_REMAINING.labels(tenant_id).set(progress.remaining)
        self.states.update(tenant_id, replay=progress)

    def _finish(self, tenant_id: str, progress: ReplayProgress) -> None:
        """Done: the dead letters parked up to the re-activation are settled."""
        progress.done = True
        progress.finished_at = self.clock()
        REPLAY_REMAINING.labels(tenant_id).set(0)
        self.states.update(tenant_id, replay=progress)
        self._health(tenant_id).settled()
