"""The worker's consumer (streams/consumer.py): it asks the broker to answer a fetch soon, and
hands each fetched record to the streams with one task."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from faust.transport.drivers import aiokafka as faust_aiokafka

from pipeline.app import app
from pipeline.config import KafkaSettings
from pipeline.streams.consumer import FAUST_FETCH_WAIT_MS


async def _built_consumer() -> AIOKafkaConsumer:
    thread = app.consumer._thread  # type: ignore[attr-defined]
    consumer: AIOKafkaConsumer = thread._create_worker_consumer(app.transport)
    return consumer


async def test_the_worker_consumer_waits_the_setting_not_fausts_1500_ms() -> None:
    assert KafkaSettings().fetch_wait_ms == 100 < FAUST_FETCH_WAIT_MS
    assert app.fetch_wait_ms == 100
    consumer = await _built_consumer()
    try:
        assert consumer._fetch_max_wait_ms == 100
    finally:
        await consumer.stop()


async def test_another_setting_reaches_the_consumer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(app, "fetch_wait_ms", 37)
    consumer = await _built_consumer()
    try:
        assert consumer._fetch_max_wait_ms == 37
    finally:
        await consumer.stop()


async def test_a_driver_that_no_longer_sets_fausts_wait_stops_the_worker(
        monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[AIOKafkaConsumer] = []

    def elsewhere(self: object, transport: object) -> AIOKafkaConsumer:
        made.append(AIOKafkaConsumer(bootstrap_servers="127.0.0.1:9092", fetch_max_wait_ms=500))
        return made[-1]

    monkeypatch.setattr(faust_aiokafka.AIOKafkaConsumerThread, "_create_worker_consumer",
                        elsewhere)
    try:
        with pytest.raises(RuntimeError, match="found 500"):
            await _built_consumer()
    finally:
        for consumer in made:
            await consumer.stop()


# -- handing fetched records to the streams (streams/consumer.py `_drain_messages`) ----------

FAUST_DRAIN_SHA256 = "44a2500309e83c630493f6828af50166ec8d96a0b3e4fb2bab735f704ae93417"


def test_fausts_loop_is_the_one_callsync_copied() -> None:
    """callsync's `_drain_messages` is faust-streaming 0.15.3's but for its wait: a Faust whose
    loop changed needs the copy looked at again."""
    import hashlib
    import inspect

    from faust.transport.consumer import Consumer

    source = inspect.getsource(Consumer._drain_messages)
    assert hashlib.sha256(source.encode()).hexdigest() == FAUST_DRAIN_SHA256
    assert "await self.wait_first(\n" in source and "self.suspend_flow.wait()" in source


def test_the_worker_consumer_drains_with_callsyncs_loop() -> None:
    from pipeline.streams.consumer import _Consumer

    assert isinstance(app.consumer, _Consumer)
    assert type(app.consumer)._drain_messages is _Consumer._drain_messages


async def test_a_hand_over_that_ends_is_awaited_and_its_error_raised() -> None:
    from pipeline.streams.consumer import _hand_over

    halt: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    handed: list[int] = []

    async def put(n: int) -> None:
        await asyncio.sleep(0.01)
        handed.append(n)

    async def broken() -> None:
        raise ValueError("the stream refused it")

    await _hand_over(put(1), halt)
    assert handed == [1]
    with pytest.raises(ValueError, match="refused"):
        await _hand_over(broken(), halt)
    assert not halt.done()


async def test_a_hand_over_still_waiting_when_the_flow_stops_is_cancelled() -> None:
    from pipeline.streams.consumer import _hand_over

    loop = asyncio.get_running_loop()
    halt: asyncio.Future[None] = loop.create_future()
    blocked = asyncio.Event()
    cancelled: list[bool] = []

    async def put() -> None:
        blocked.set()
        try:
            await asyncio.sleep(60)  # a full stream buffer
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    loop.call_later(0.05, halt.set_result, None)
    await asyncio.wait_for(_hand_over(put(), halt), 5)
    assert blocked.is_set()
    await asyncio.sleep(0)
    assert cancelled == [True]
    # An ended halt is done for every later record too: the loop makes a new one (Faust's
    # wait, likewise, returns at once while the flow is suspended) and a hand-over ready at
    # once still goes through, as it does in Faust's.
    done: list[int] = []

    async def ready() -> None:
        done.append(1)

    await _hand_over(ready(), halt)
    assert done == [1]


class _Draining:
    """What `_Consumer._drain_messages` reads of its consumer, with real flow-control events:
    one batch of records is fetched, then the consumer stops."""

    def __init__(self, records: list[tuple[str, int]]) -> None:
        from collections import defaultdict
        from types import SimpleNamespace

        from faust.types import TP
        from mode.utils.locks import Event
        from mode.utils.queues import FlowControlEvent

        self.batch = [(TP(topic, 0), SimpleNamespace(topic=topic, tp=TP(topic, 0), offset=offset))
                      for topic, offset in records]
        self.handed: list[tuple[str, int]] = []
        self._stopped = Event()
        self.suspend_flow = Event()
        self._read_offset: dict[object, int | None] = defaultdict(lambda: None)
        self.diag = SimpleNamespace(set_flag=lambda flag: None, unset_flag=lambda flag: None)
        self._commit_every = None
        self.should_stop = False
        self.consumer_stopped_errors = ()
        self.app = SimpleNamespace(
            topics=SimpleNamespace(acks_enabled_for=lambda topic: True),
            flow_control=FlowControlEvent(initially_suspended=True), rebalancing=False,
            in_recovery=False, tables=SimpleNamespace(changelog_topics={"t-changelog"}))
        self.transport = SimpleNamespace(app=self.app)
        self.log = logging.getLogger(__name__)

    async def callback(self, message: Any) -> None:
        self.handed.append((message.topic, message.offset))

    async def getmany(self, **options: float) -> AsyncIterator[tuple[Any, Any]]:
        for record in self.batch:
            yield record
        self._stopped.set()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def wait_first(self, *coros: Any) -> None:
        await asyncio.wait([asyncio.ensure_future(c) for c in coros],
                           return_when=asyncio.FIRST_COMPLETED)

    async def _streams_resumed(self, message: Any, halt: asyncio.Future[Any]) -> bool:
        from pipeline.streams.consumer import _Consumer

        return await _Consumer._streams_resumed(self, message, halt)  # type: ignore[arg-type]

    async def drain(self) -> None:
        from types import SimpleNamespace

        from mode.utils.locks import Event

        from pipeline.streams.consumer import _Consumer

        fetcher = SimpleNamespace(_stopped=Event())
        await _Consumer._drain_messages(self, fetcher)  # type: ignore[arg-type]


async def test_a_record_fetched_before_the_streams_resume_waits_for_them() -> None:
    """Faust's streams skip a record that reaches them while the app's flow control is
    suspended (the end of a recovery: the seek is done, the resume not yet): the loop holds
    the record until they take records again. The tables' changelogs go on meanwhile."""
    draining = _Draining([("t-changelog", 5), ("t.control", 7), ("t.control", 8)])
    drain = asyncio.ensure_future(draining.drain())
    await asyncio.sleep(0.05)
    assert draining.handed == [("t-changelog", 5)], "the command waits; the changelog does not"
    assert not drain.done()
    draining.app.flow_control.resume()
    await asyncio.wait_for(drain, 5)
    assert draining.handed == [("t-changelog", 5), ("t.control", 7), ("t.control", 8)]
    assert [draining._read_offset[tp] for tp, _ in draining.batch[1:]] == [8, 8]


async def test_a_record_fetched_during_the_seek_that_ends_a_rebalance_waits_for_its_end(
        ) -> None:
    """The flow control may be active all through a rebalance (a recovery resumes it to read
    the changelogs); the rebalance's end resumes it again, which empties the streams' queues.
    A record fetched before that end waits for it."""
    draining = _Draining([("t.control", 7)])
    draining.app.flow_control.resume()
    draining.app.rebalancing = True
    drain = asyncio.ensure_future(draining.drain())
    await asyncio.sleep(0.05)
    assert draining.handed == [] and not drain.done()
    draining.app.rebalancing = False
    await asyncio.wait_for(drain, 5)
    assert draining.handed == [("t.control", 7)]


async def test_a_record_read_before_the_seek_below_where_the_partition_now_starts_is_dropped(
        ) -> None:
    """The rebalance's seek moved the partition's read offset past a record fetched before
    it: that record was read already, and is dropped as the loop drops it when it arrives."""
    draining = _Draining([("t.control", 7)])
    tp = draining.batch[0][0]
    draining.app.flow_control.resume()
    draining.app.rebalancing = True
    drain = asyncio.ensure_future(draining.drain())
    await asyncio.sleep(0.05)
    draining._read_offset[tp] = 9  # the seek to the committed offsets
    draining.app.rebalancing = False
    await asyncio.wait_for(drain, 5)
    assert draining.handed == [] and draining._read_offset[tp] == 9


async def test_a_record_waiting_for_the_streams_when_the_flow_stops_is_left_for_the_seek() -> None:
    """A rebalance stops the flow while the record waits: it is not handed over and its offset
    is not marked read, so the seek to the committed offsets that follows reads it again."""
    draining = _Draining([("t.control", 7), ("t.control", 8)])
    drain = asyncio.ensure_future(draining.drain())
    await asyncio.sleep(0.05)
    assert draining.handed == [] and not drain.done()
    draining.suspend_flow.set()
    await asyncio.wait_for(drain, 5)
    assert draining.handed == []
    assert draining._read_offset[draining.batch[0][0]] is None


async def test_a_record_fetched_while_the_recovery_reads_the_changelogs_never_holds_them_up(
        ) -> None:
    """The recovery reads the tables' changelogs through the same loop, and resumes the flow
    to do so: a record that waited there for the rebalance to end would starve the recovery,
    and the rebalance would never end. It is left unread, for the seek at the recovery's
    end; the changelog records behind it go on."""
    draining = _Draining([("t.control", 7), ("t-changelog", 5), ("t-changelog", 6)])
    draining.app.flow_control.resume()
    draining.app.rebalancing = True
    draining.app.in_recovery = True
    await asyncio.wait_for(draining.drain(), 5)
    assert draining.handed == [("t-changelog", 5), ("t-changelog", 6)]
    assert draining._read_offset[draining.batch[0][0]] is None


async def test_a_record_already_waiting_when_the_recovery_begins_lets_it_read(
        ) -> None:
    draining = _Draining([("t.control", 7), ("t-changelog", 5)])
    draining.app.flow_control.resume()
    draining.app.rebalancing = True
    drain = asyncio.ensure_future(draining.drain())
    await asyncio.sleep(0.05)
    assert draining.handed == [] and not drain.done()
    draining.app.in_recovery = True
    await asyncio.wait_for(drain, 5)
    assert draining.handed == [("t-changelog", 5)]
    assert draining._read_offset[draining.batch[0][0]] is None


async def test_records_go_straight_through_while_the_streams_take_them() -> None:
    draining = _Draining([("t.control", 1), ("t.control", 2)])
    draining.app.flow_control.resume()
    await asyncio.wait_for(draining.drain(), 5)
    assert draining.handed == [("t.control", 1), ("t.control", 2)]


# -- the monitor (streams/consumer.py `LeanMonitor`) -----------------------------------------


def test_the_app_s_monitor_keeps_only_what_faust_reads_of_it() -> None:
    from types import SimpleNamespace

    from faust.sensors.base import SensorDelegate
    from faust.types import TP

    from pipeline.streams.consumer import LeanMonitor

    monitor = app.monitor
    assert isinstance(monitor, LeanMonitor)
    sensors = SensorDelegate(app)  # as a started worker's: Faust adds its monitor at start
    sensors._sensors.add(monitor)
    tp = TP("calls", 3)
    message = SimpleNamespace(tp=tp, offset=7, time_in=None)
    stream = SimpleNamespace(task_owner=None)
    before = (monitor.events_total, monitor.messages_received_total, monitor.messages_sent)
    state = sensors.on_stream_event_in(tp, 7, stream, message)  # type: ignore[arg-type]
    sensors.on_message_in(tp, 7, message)  # type: ignore[arg-type]
    sensors.on_stream_event_out(tp, 7, stream, message, state)  # type: ignore[arg-type]
    sensors.on_message_out(tp, 7, message)  # type: ignore[arg-type]
    table = SimpleNamespace(name="ledger")
    sensors.on_table_get(table, "k")  # type: ignore[arg-type]
    sensors.on_table_set(table, "k", "v")  # type: ignore[arg-type]
    sent = sensors.on_send_initiated(None, "calls", None, 1, 2)  # type: ignore[arg-type]
    sensors.on_send_completed(None, sent, None)  # type: ignore[arg-type]
    # ... which tallies nothing, but for when the partition's stream last took an event: the
    # aiokafka driver's check for a stalled stream reads that.
    assert (monitor.events_total, monitor.messages_received_total, monitor.messages_sent) \
        == before
    assert message.time_in is None and "ledger" not in monitor.tables
    assert tp in monitor.stream_inbound_time
