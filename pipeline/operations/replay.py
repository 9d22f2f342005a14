"""Replaying a tenant's calls of a window through the same planning and delivery, resumably."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from pipeline.delivery.health import Condition, TenantHealth
from pipeline.delivery.intake import TenantDirectory
from pipeline.delivery.lanes import LaneRegistry
from pipeline.delivery.tenantstate import ReplayProgress, StateStore
from pipeline.delivery.work import SourceRef
from pipeline.operations.replayrun import ReplayReader, report_replay
from pipeline.operations.window import ReplayWindow
from schemas.control import CommandResult

__all__ = ["ReplayManager"]

log = logging.getLogger(__name__)
# Records are looked up by their timestamp; a producer's clock may run behind the call's.
LOOKBACK_MS = 3_600_000
# After an outage the start is an offset, not a time: the window lets every event through.
SINCE_EVER = datetime(2000, 1, 1, tzinfo=UTC)


class ReplayManager:
    """Starts, resumes and stops the tenants' replays; a replay is read by `ReplayReader`."""

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
                await report_replay(self, tenant_id, progress, "progress",
                                    f"interrupted ({type(exc).__name__}); resuming")

    async def _run(self, tenant_id: str) -> None:
        progress = self.states.get(tenant_id).replay
        config = self.directory.config(tenant_id)
        if progress is None or progress.done or config is None:
            return
        self._active[tenant_id] = progress
        try:
            await ReplayReader(self).read(tenant_id, progress, config)
        finally:
            self._active.pop(tenant_id, None)

    def read_consumer(self) -> AIOKafkaConsumer:
        """A consumer of the replay's own, to read the call topic from its saved offsets."""
        return AIOKafkaConsumer(**self.client_options, enable_auto_commit=False,
                                max_poll_records=500)
