"""The worker's Faust app: its Kafka fetches do not hold a partition's new records back, each
record fetched reaches the streams with one task, not four, and none reaches them while they
would skip it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any, ClassVar

import faust
from aiokafka import AIOKafkaConsumer
from faust.sensors.monitor import Monitor
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TransportT
from mode import ServiceT

__all__ = ["FAUST_FETCH_WAIT_MS", "App"]

# What faust-streaming 0.15.3's driver sets, with no setting to change it.
FAUST_FETCH_WAIT_MS = 1500


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """aiokafka has one fetch in flight per broker, and leaves out of it each partition whose
    fetched records were not all handed on yet; the broker holds that fetch up to its wait
    when the partitions in it have nothing new. Records arriving meanwhile on a partition left
    out wait for it. Pop-ups at 600/s for 5 s: a gap of 0.9-1.5 s with none delivered in 9 runs
    of 15, the 99th percentile then 1.6-2.7 s; with 100 ms, no such gap in 13. With a short
    wait, a partition waits at most that long."""

    def _create_worker_consumer(self, transport: Any) -> AIOKafkaConsumer:
        consumer: AIOKafkaConsumer = super()._create_worker_consumer(transport)
        wait_ms = getattr(consumer, "_fetch_max_wait_ms", None)
        if wait_ms != FAUST_FETCH_WAIT_MS:  # aiokafka or Faust changed under us: say so
            raise RuntimeError(f"expected Faust's fetch wait of {FAUST_FETCH_WAIT_MS} ms on "
                               f"aiokafka's consumer, found {wait_ms!r}")
        # Read by aiokafka when the consumer starts and builds its fetcher.
        consumer._fetch_max_wait_ms = self.app.fetch_wait_ms  # type: ignore[attr-defined]
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> _ConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _drain_messages(self, fetcher: ServiceT) -> None:
        """faust-streaming 0.15.3's loop (transport/consumer.py), which hands each fetched
        record to the streams, but for how it waits for that hand-over. Faust's waits for the
        first of four tasks made for the record: the hand-over, the flow's suspension, the
        consumer's stop and its crash; it cancels the other three. That was 4.7 % of a busy
        worker's main thread sending pop-ups at 500/s (py-spy); 31 us a record in a
        micro-benchmark, 12.5 us this way. Here the hand-over is the record's one task, and
        one task, made again only once it ends, watches for the other three. As in Faust, a
        hand-over still waiting when the flow is suspended (a rebalance) or the consumer
        stops is cancelled, and its error is raised."""
        callback = self.callback
        getmany = self.getmany
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set  # type: ignore[attr-defined]
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        set_flag = self.diag.set_flag
        unset_flag = self.diag.unset_flag
        commit_every = self._commit_every
        acks_enabled_for = self.app.topics.acks_enabled_for
        app = self.app
        streams_take = app.flow_control.is_active
        yield_every = 100
        num_since_yield = 0
        halt: asyncio.Future[Any] | None = None
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                set_flag(CONSUMER_FETCHING)
                ait = getmany(timeout=1.0)
                await self.sleep(0)
                if not self.should_stop:
                    async for tp, message in ait:
                        num_since_yield += 1
                        if num_since_yield > yield_every:
                            await asyncio.sleep(0)
                            num_since_yield = 0
                        offset = message.offset
                        r_offset = get_read_offset(tp)
                        if r_offset is None or offset >= r_offset:
                            gap = offset - (r_offset or 0)
                            if gap > 1 and r_offset and acks_enabled_for(message.topic):
                                await self._add_gap(tp, r_offset + 1, offset)
                            if commit_every is not None and self._n_acked >= commit_every:
                                self._n_acked = 0
                                await self.commit()
                            if halt is None or halt.done():
                                halt = asyncio.ensure_future(
                                    self.wait_first(self.suspend_flow.wait()))
                            if ((app.rebalancing or not streams_take())
                                    and not await self._streams_resumed(message, halt)):
                                continue  # read again after the seek, or read already
                            await _hand_over(callback(message), halt)
                            set_read_offset(tp, offset)
                    unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            unset_flag(CONSUMER_FETCHING)
            if halt is not None:
                halt.cancel()

    async def _streams_resumed(self, message: Any, halt: asyncio.Future[Any]) -> bool:
        """Whether a record fetched during a rebalance may be handed over now.

        A rebalance ends with a seek to the committed offsets and then `flow_control.resume()`,
        which empties the streams' queues; while the flow control is suspended, the streams
        skip what reaches them (`Stream._c_aiter`). The consumer already fetches the streams'
        partitions during that seek: a record fetched then went into a queue that the resume
        emptied, or was skipped, and the offsets after it went on. It waited for the next
        rebalance (a command published while a worker restarted went unanswered), and Faust's
        head-gap commit (#606) could then commit past it. So such a record waits until the
        rebalance is over and the streams take records again; if the flow stops first (another
        rebalance), it is left for the seek that follows. The tables' changelogs are read
        during the rebalance (recovery): they never wait. The seek moves the partition's read
        offset: a record fetched before it, below where the partition now starts, was read
        already and is dropped, as the loop drops it when it arrives."""
        if message.topic in self.app.tables.changelog_topics:
            return True
        self.log.debug("a record of %s waits for the rebalance to end", message.topic)
        app = self.app
        while app.rebalancing or not app.flow_control.is_active():
            if app.in_recovery:
                # The recovery reads the changelogs through this loop: a record waiting here
                # would starve it, and the rebalance would never end (a worker stalled so,
                # its recovery waiting minutes for changelog records). The seek to the
                # committed offsets at the recovery's end reads this record again.
                return False
            # Faust signals the end of a rebalance by no event: a short poll, for a few
            # milliseconds at the end of each rebalance.
            await _hand_over(asyncio.sleep(0.01), halt)
            if halt.done():
                return False
        read = self._read_offset[message.tp]
        return read is None or message.offset >= read


async def _hand_over(handing: Awaitable[Any], halt: asyncio.Future[Any]) -> None:
    """Run the hand-over until it ends or `halt` does first; its error, if any, is raised."""
    task = asyncio.ensure_future(handing)
    try:
        await asyncio.wait((task, halt), return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not task.done():
            task.cancel()
    if task.done() and not task.cancelled():
        task.result()


class _Transport(faust_aiokafka.Transport):
    Consumer: ClassVar[type[_Consumer]] = _Consumer


class LeanMonitor(Monitor):
    """Faust's monitor without its tallies of every message, event, table read and write and
    send: they feed Faust's web views, which the worker does not serve (its metrics are
    callsync's own, in Prometheus), and cost 1.7 % of a busy worker's CPU (pop-ups at 500/s).
    What Faust itself reads of the monitor stays: when each partition's stream last took an
    event (its check for a stalled stream), the partitions' end and committed offsets, and
    the timings of commits, sends that fail, assignments and rebalances."""

    def on_message_in(self, tp: Any, offset: int, message: Any) -> None:
        return None

    def on_stream_event_in(self, tp: Any, offset: int, stream: Any, event: Any) -> None:
        self.stream_inbound_time[tp] = time.monotonic()

    def on_stream_event_out(self, tp: Any, offset: int, stream: Any, event: Any,
                            state: Any = None) -> None:
        return None

    def on_message_out(self, tp: Any, offset: int, message: Any) -> None:
        return None

    def on_table_get(self, table: Any, key: Any) -> None:
        return None

    def on_table_set(self, table: Any, key: Any, value: Any) -> None:
        return None

    def on_table_del(self, table: Any, key: Any) -> None:
        return None

    def on_send_initiated(self, producer: Any, topic: str, message: Any, keysize: int,
                          valsize: int) -> None:
        return None

    def on_send_completed(self, producer: Any, state: Any, metadata: Any) -> None:
        return None


class App(faust.App):
    """`faust.App` whose consumer asks the brokers to answer a fetch within `fetch_wait_ms`,
    and whose monitor keeps only what Faust reads of it."""

    def __init__(self, *args: Any, fetch_wait_ms: int, **kwargs: Any) -> None:
        self.fetch_wait_ms = fetch_wait_ms
        kwargs.setdefault("Monitor", LeanMonitor)  # Faust's setting: the class it makes
        super().__init__(*args, **kwargs)

    def _new_transport(self) -> TransportT:
        return _Transport(self.conf.broker_consumer, self)
