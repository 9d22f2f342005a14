"""The worker's consumer (pipeline/streams/consumer.py): short fetch waits, records delivered
in place."""

from __future__ import annotations

import asyncio
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


def _faust_consumer() -> Any:
    return app.consumer  # pipeline/streams/consumer.py's


class _Stream:
    """An agent's stream buffer as a delivery sees it: room, or none until `room` is set."""

    def __init__(self, *, full: bool = False) -> None:
        self.room = asyncio.Event()
        if not full:
            self.room.set()
        self.got: list[str] = []
        self.cancelled = False

    async def deliver(self, message: str) -> str:
        try:
            await self.room.wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        self.got.append(message)
        return message


def _count_waits(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    waits: list[int] = []
    original = _faust_consumer().wait_first

    async def counted(*coros: Any, **options: Any) -> Any:
        waits.append(len(coros))
        return await original(*coros, **options)

    monkeypatch.setattr(_faust_consumer(), "wait_first", counted)
    return waits


async def test_a_record_the_stream_has_room_for_is_delivered_in_place(
        monkeypatch: pytest.MonkeyPatch) -> None:
    waits = _count_waits(monkeypatch)
    stream = _Stream()
    await _faust_consumer()._deliver(stream.deliver, "r1")
    assert stream.got == ["r1"] and waits == []


async def test_a_record_that_must_wait_for_room_is_delivered_once_there_is(
        monkeypatch: pytest.MonkeyPatch) -> None:
    waits = _count_waits(monkeypatch)
    stream = _Stream(full=True)
    delivery = asyncio.create_task(_faust_consumer()._deliver(stream.deliver, "r2"))
    await asyncio.sleep(0.05)
    assert not delivery.done() and stream.got == []
    stream.room.set()
    await asyncio.wait_for(delivery, 5)
    assert stream.got == ["r2"] and waits == [2]


async def test_a_rebalance_stops_a_waiting_delivery_and_cancels_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    stream = _Stream(full=True)
    delivery = asyncio.create_task(_faust_consumer()._deliver(stream.deliver, "r3"))
    await asyncio.sleep(0.05)
    _faust_consumer().suspend_flow.set()
    try:
        await asyncio.wait_for(delivery, 5)
    finally:
        _faust_consumer().suspend_flow.clear()
    assert stream.got == [] and stream.cancelled  # its next owner (or this one) reads it again


async def test_during_a_rebalance_every_delivery_waits_as_faust_has_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    waits = _count_waits(monkeypatch)
    _faust_consumer().suspend_flow.set()
    try:
        await _faust_consumer()._deliver(_Stream().deliver, "r4")
    finally:
        _faust_consumer().suspend_flow.clear()
    assert waits == [2]


async def test_a_failing_delivery_raises_where_fausts_would() -> None:
    async def broken(message: str) -> None:
        raise ValueError(message)

    with pytest.raises(ValueError, match="r5"):
        await _faust_consumer()._deliver(broken, "r5")
