"""The console's reader: the topics it shows, from their beginning, folded into an Overview.

Tenants come from the compacted integrations topic (records the control desk signed; the
encrypted key is dropped on reading), their state from the workers' tenant-state table
changelog (`<app_id>-tenant-state-changelog`): one passive read shows every tenant's state,
parked count and replay at once, with no command per tenant per page and no load on the
workers, and it still shows the last known state while no worker runs. What only a worker's
memory holds (fallbacks, lane backlog) comes from `status` answers on the results topic, which
the console asks for on a tenant's page and on demand.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from pipeline.config import Settings
from pipeline.console.overview import Overview

__all__ = ["Feed", "changelog_topic"]

log = logging.getLogger(__name__)
RESCAN_SECONDS = 5.0


def changelog_topic(settings: Settings, table: str) -> str:
    """Faust's name for a table's changelog topic."""
    return f"{settings.app_id}-{table}-changelog"


class Feed:
    def __init__(self, settings: Settings, overview: Overview) -> None:
        self.settings = settings
        self.overview = overview
        topics = settings.topics
        self.handlers: dict[str, Callable[[Any], object]] = {
            topics.integrations: lambda m: overview.apply_config(m.key, m.value),
            changelog_topic(settings, "tenant-state"): lambda m: overview.apply_state(
                m.key, m.value),
            changelog_topic(settings, "ledger"): lambda m: overview.apply_ledger(
                m.key, m.value, m.timestamp),
            topics.dead_letter: lambda m: overview.apply_letter(
                "dead", list(m.headers or ()), topic=m.topic, partition=m.partition,
                offset=m.offset),
            topics.invalid: lambda m: overview.apply_letter(
                "invalid", list(m.headers or ()), topic=m.topic, partition=m.partition,
                offset=m.offset),
            topics.results: lambda m: overview.apply_result(m.value),
        }
        self.positions: dict[TopicPartition, int] = {}
        self.caught_up = asyncio.Event()
        self._targets: dict[TopicPartition, int] | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="console-feed")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _assign(self, consumer: AIOKafkaConsumer) -> None:
        """Take on partitions that appeared (a changelog exists once a worker wrote to it)."""
        # The consumer's own metadata covers only assigned topics (partitions_for_topic says
        # None for the others), so the whole cluster's is asked for.
        cluster = await consumer._client.fetch_all_metadata()
        found = {TopicPartition(topic, p) for topic in self.handlers
                 for p in cluster.partitions_for_topic(topic) or ()}
        if found <= set(self.positions):
            return
        consumer.assign(sorted(found))
        for tp in found:
            if tp in self.positions:
                consumer.seek(tp, self.positions[tp])  # assign() forgets where we were
            else:
                self.positions[tp] = 0
        new = [tp for tp in found if self.positions[tp] == 0]
        if new:
            await consumer.seek_to_beginning(*new)
        if self._targets is None:
            self._targets = await consumer.end_offsets(sorted(found))

    async def _check_caught_up(self, consumer: AIOKafkaConsumer) -> None:
        """Set once every partition is read up to where it ended when the console started."""
        if self._targets is None or self.caught_up.is_set():
            return
        for tp, end in self._targets.items():
            if self.positions.get(tp, 0) < end:
                # the consumer's position also steps over what is no record (compacted away)
                self.positions[tp] = max(self.positions.get(tp, 0), await consumer.position(tp))
                if self.positions[tp] < end:
                    return
        self.caught_up.set()

    async def _run(self) -> None:
        consumer = AIOKafkaConsumer(**self.settings.kafka.client_options(),
                                    enable_auto_commit=False, auto_offset_reset="earliest")
        await consumer.start()
        try:
            rescan_at = 0.0
            while True:
                try:
                    if time.monotonic() >= rescan_at:
                        await self._assign(consumer)
                        rescan_at = time.monotonic() + RESCAN_SECONDS
                    if not self.positions:
                        await asyncio.sleep(0.5)
                        continue
                    batch = await consumer.getmany(timeout_ms=500, max_records=5000)
                    for tp, messages in batch.items():
                        handle = self.handlers[tp.topic]
                        for message in messages:
                            handle(message)
                            self.positions[tp] = message.offset + 1
                    await self._check_caught_up(consumer)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("console feed: reading failed; trying again")
                    await asyncio.sleep(1.0)
        finally:
            await consumer.stop()
