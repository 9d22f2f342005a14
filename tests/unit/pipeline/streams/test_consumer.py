"""The worker's consumer asks the broker to answer a fetch soon (streams/consumer.py)."""

from __future__ import annotations

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
