"""What the pipeline relies on, proven against the real broker the suite started."""

from __future__ import annotations

import time
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.waiting import wait_until

pytestmark = pytest.mark.kafka
DAY_MS = 86_400_000


async def _create(bootstrap: str, topic: str, partitions: int = 1,
                  config: dict[str, str] | None = None) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1, topic_configs=config or {})])
    finally:
        await admin.close()


async def _produce(bootstrap: str, topic: str,
                   records: list[tuple[bytes, bytes, int | None]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for key, value, ts in records:
            await producer.send_and_wait(topic, value, key=key, timestamp_ms=ts)
    finally:
        await producer.stop()


async def _read_all(consumer: AIOKafkaConsumer, expect: int, wait: float = 20) -> list[bytes]:
    values: list[bytes] = []
    deadline = time.monotonic() + wait
    while len(values) < expect and time.monotonic() < deadline:
        batch = await consumer.getmany(timeout_ms=500)
        values += [m.value for msgs in batch.values() for m in msgs]
    return values


async def test_consumer_group_resumes_from_committed_offset(kafka_bootstrap: str,
                                                            topic_name: str) -> None:
    await _create(kafka_bootstrap, topic_name)
    await _produce(kafka_bootstrap, topic_name, [(b"k", b"%d" % i, None) for i in range(10)])
    group = f"g-{uuid.uuid4().hex[:8]}"

    first = AIOKafkaConsumer(topic_name, bootstrap_servers=kafka_bootstrap, group_id=group,
                             enable_auto_commit=False, auto_offset_reset="earliest")
    await first.start()
    tp = TopicPartition(topic_name, 0)
    read = await _read_all(first, 10)
    assert read == [b"%d" % i for i in range(10)]
    await first.commit({tp: 6})  # outcomes of 0..5 are durable, 6..9 are not
    await first.stop()

    second = AIOKafkaConsumer(topic_name, bootstrap_servers=kafka_bootstrap, group_id=group,
                              enable_auto_commit=False, auto_offset_reset="earliest")
    await second.start()
    try:
        assert await _read_all(second, 4) == [b"6", b"7", b"8", b"9"]
        assert await second.committed(tp) == 6
    finally:
        await second.stop()


async def test_offsets_for_times_finds_records_stamped_days_ago(kafka_bootstrap: str,
                                                                 topic_name: str) -> None:
    await _create(kafka_bootstrap, topic_name)
    now = int(time.time() * 1000)
    # Produced now, stamped 4..0 days ago: the lookup must go by record time, not arrival.
    await _produce(kafka_bootstrap, topic_name,
                   [(b"k", b"day-%d" % d, now - d * DAY_MS) for d in (4, 3, 2, 1, 0)])
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topic_name, 0)
        found = await consumer.offsets_for_times({tp: now - int(2.5 * DAY_MS)})
        assert found[tp] is not None
        assert found[tp].offset == 2 and found[tp].timestamp == now - 2 * DAY_MS
        future = await consumer.offsets_for_times({tp: now + DAY_MS})
        assert future[tp] is None
        assert (await consumer.end_offsets([tp]))[tp] == 5
        consumer.assign([tp])
        consumer.seek(tp, found[tp].offset)
        assert await _read_all(consumer, 3) == [b"day-2", b"day-1", b"day-0"]
    finally:
        await consumer.stop()


async def test_compacted_topic_keeps_the_latest_value_per_key(kafka_bootstrap: str,
                                                               topic_name: str) -> None:
    await _create(kafka_bootstrap, topic_name, config={
        "cleanup.policy": "compact", "segment.ms": "100", "min.cleanable.dirty.ratio": "0.001",
        "delete.retention.ms": "100", "min.compaction.lag.ms": "0"})
    await _produce(kafka_bootstrap, topic_name,
                   [(b"tenant-%d" % (i % 3), b"v%d" % i, None) for i in range(30)])
    tp = TopicPartition(topic_name, 0)
    kept: list[tuple[bytes, bytes]] = []

    async def compacted() -> dict[bytes, bytes] | None:
        # Each new record rolls the segment (segment.ms) so the older ones become cleanable.
        await _produce(kafka_bootstrap, topic_name, [(b"roll", b"x", None)])
        consumer = AIOKafkaConsumer(topic_name, bootstrap_servers=kafka_bootstrap,
                                    auto_offset_reset="earliest", enable_auto_commit=False)
        await consumer.start()
        try:
            end = (await consumer.end_offsets([tp]))[tp]
            seen: list[tuple[bytes, bytes]] = []
            while True:
                batch = await consumer.getmany(timeout_ms=500)
                msgs = [m for ms in batch.values() for m in ms]
                seen += [(m.key, m.value) for m in msgs]
                if not msgs or msgs[-1].offset >= end - 1:
                    break
        finally:
            await consumer.stop()
        kept[:] = [(k, v) for k, v in seen if k != b"roll"]
        return dict(kept) if len(kept) == 3 else None

    latest = await wait_until(compacted, "the log cleaner to compact the topic", within=60,
                              every=0.5, detail=lambda: f"{len(kept)} of the 30 records left")
    assert latest == {b"tenant-0": b"v27", b"tenant-1": b"v28", b"tenant-2": b"v29"}


async def test_idempotent_producer_writes_each_record_once_in_order(kafka_bootstrap: str,
                                                                     topic_name: str) -> None:
    await _create(kafka_bootstrap, topic_name)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        futures = [await producer.send(topic_name, b"%d" % i, key=b"k") for i in range(200)]
        offsets = [(await f).offset for f in futures]
    finally:
        await producer.stop()
    assert offsets == list(range(200))
    consumer = AIOKafkaConsumer(topic_name, bootstrap_servers=kafka_bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        assert await _read_all(consumer, 200) == [b"%d" % i for i in range(200)]
    finally:
        await consumer.stop()


async def test_aborted_transactions_stay_invisible_to_read_committed(kafka_bootstrap: str,
                                                                      topic_name: str) -> None:
    await _create(kafka_bootstrap, topic_name)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap,
                                transactional_id=f"tx-{uuid.uuid4().hex[:8]}")
    await producer.start()
    try:
        async with producer.transaction():
            await producer.send_and_wait(topic_name, b"kept")
        await producer.begin_transaction()
        await producer.send_and_wait(topic_name, b"aborted")
        await producer.abort_transaction()
        async with producer.transaction():
            await producer.send_and_wait(topic_name, b"kept-too")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(topic_name, bootstrap_servers=kafka_bootstrap,
                                isolation_level="read_committed",
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        assert await _read_all(consumer, 2) == [b"kept", b"kept-too"]
        assert await _read_all(consumer, 1, wait=2) == []
    finally:
        await consumer.stop()
