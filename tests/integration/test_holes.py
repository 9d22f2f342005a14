"""HoleFiller against a real broker: offsets Faust never handed out are read apart, none lost."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata

from pipeline.streams.holes import HoleFiller
from pipeline.streams.offsets import Lease, OffsetGate

pytestmark = pytest.mark.kafka

IDLE = 5.0  # seconds with nothing read before a partition's log end is looked at


async def _topic_with(bootstrap: str, topic: str, count: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for n in range(count):
            await producer.send_and_wait(topic, f"record-{n}".encode(), key=b"k", partition=0)
    finally:
        await producer.stop()


async def _commit(bootstrap: str, group: str, topic: str, offset: int) -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.commit({tp: OffsetAndMetadata(offset, "")})
    finally:
        await consumer.stop()


def _filler(gate: OffsetGate, bootstrap: str, group: str, topic: str,
            handed: dict[int, bytes], ahead: list[float] | None = None) -> HoleFiller:
    """A filler on a clock `ahead[0]` seconds past the gate's: idle time passes at once."""
    skew = ahead if ahead is not None else [0.0]

    async def accept(record: ConsumerRecord[bytes, bytes], lease: Lease) -> None:
        assert lease.live and record.value is not None
        handed[record.offset] = record.value
        lease.settle()

    return HoleFiller(gate, group_id=group, client_options={"bootstrap_servers": bootstrap},
                      accept=accept, assigned=lambda: [((topic, 0), 1)], ready=lambda: True,
                      idle_seconds=IDLE, clock=lambda: time.monotonic() + skew[0])


async def _step(filler: HoleFiller, within: float = 30.0) -> None:
    """One step, tried again after a retriable broker error, as the worker's loop (`run`) does:
    on a fresh broker the group coordinator is not there until `__consumer_offsets` is made."""
    deadline = time.monotonic() + within
    while True:
        try:
            await filler.step()
            return
        except KafkaError as exc:
            if not exc.retriable or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


async def test_records_below_a_generation_s_first_are_read_from_the_committed_offset(
        kafka_bootstrap: str, topic_name: str) -> None:
    group = f"{topic_name}-group"
    await _topic_with(kafka_bootstrap, topic_name, 30)
    await _commit(kafka_bootstrap, group, topic_name, 12)
    gate = OffsetGate()
    # Faust handed out 20 and 21 first, then 25: 12..19 and 22..24 were never handed out.
    leases = [gate.read(topic_name, 0, o, generation=1, stamp=0.0) for o in (20, 21, 25)]
    for lease in leases:
        lease.settle()
    handed: dict[int, bytes] = {}
    ahead = [0.0]
    filler = _filler(gate, kafka_bootstrap, group, topic_name, handed, ahead)
    try:
        await _step(filler)  # looks up the base (12), then reads the holes
        ahead[0] = IDLE + 0.1  # longer than IDLE with nothing read
        await _step(filler)  # 26..29 never came either: the watch finds them once idle
    finally:
        await filler.close()
    expected = [*range(12, 20), 22, 23, 24, 26, 27, 28, 29]
    assert sorted(handed) == expected
    assert handed[12] == b"record-12"
    assert gate.holes() == []
    assert gate.commit_points() == {(topic_name, 0): 30}


async def test_a_partition_never_committed_starts_at_the_log_s_start(
        kafka_bootstrap: str, topic_name: str) -> None:
    await _topic_with(kafka_bootstrap, topic_name, 5)
    gate = OffsetGate()
    gate.read(topic_name, 0, 3, generation=1, stamp=0.0).settle()
    handed: dict[int, bytes] = {}
    filler = _filler(gate, kafka_bootstrap, f"{topic_name}-none", topic_name, handed)
    try:
        await _step(filler)
    finally:
        await filler.close()
    assert sorted(handed) == [0, 1, 2]
    assert gate.commit_points() == {(topic_name, 0): 4}  # 4 still to read: not idle yet


async def test_nothing_is_read_while_the_worker_is_not_steady(
        kafka_bootstrap: str, topic_name: str) -> None:
    await _topic_with(kafka_bootstrap, topic_name, 5)
    gate = OffsetGate()
    gate.read(topic_name, 0, 3, generation=1, stamp=0.0).settle()
    handed: dict[int, bytes] = {}
    filler = _filler(gate, kafka_bootstrap, f"{topic_name}-busy", topic_name, handed)
    filler.ready = lambda: False  # a rebalance under way: the ledger may not be recovered
    try:
        await _step(filler)
    finally:
        await filler.close()
    assert handed == {} and gate.unbased() == [((topic_name, 0), 1)]


async def test_transaction_markers_are_passed_not_waited_for(
        kafka_bootstrap: str, topic_name: str) -> None:
    """A producer that publishes in transactions leaves a commit marker after each: an offset
    that holds no record. Faust hands out the records around it; the gap the marker leaves is
    read apart once, found empty, and the commit point passes it."""
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic_name, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap,
                                transactional_id=f"{topic_name}-tx")
    await producer.start()
    try:
        for n in range(3):
            async with producer.transaction():
                await producer.send_and_wait(topic_name, f"tx-{n}".encode(), key=b"k",
                                             partition=0)
    finally:
        await producer.stop()
    reader = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, enable_auto_commit=False,
                              auto_offset_reset="earliest")
    await reader.start()
    try:
        tp = TopicPartition(topic_name, 0)
        reader.assign([tp])
        records = (await reader.getmany(tp, timeout_ms=5000)).get(tp, [])
        end = (await reader.end_offsets([tp]))[tp]
    finally:
        await reader.stop()
    offsets = [r.offset for r in records]
    assert offsets == [0, 2, 4] and end == 6, "one marker after each record"
    gate = OffsetGate()
    for offset in offsets:  # as Faust hands them out
        gate.read(topic_name, 0, offset, generation=1, stamp=0.0).settle()
    handed: dict[int, bytes] = {}
    ahead = [0.0]
    filler = _filler(gate, kafka_bootstrap, f"{topic_name}-tx", topic_name, handed, ahead)
    try:
        await _step(filler)  # base 0 (never committed); holes 1 and 3 hold markers only
        assert gate.holes() == [] and handed == {}
        assert gate.commit_points() == {(topic_name, 0): 5}
        ahead[0] = IDLE + 0.1  # longer than IDLE with nothing read
        await _step(filler)  # the last marker, at the log's end, once idle
    finally:
        await filler.close()
    assert handed == {} and gate.commit_points() == {(topic_name, 0): 6}
