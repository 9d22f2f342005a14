"""HoleFiller against a real broker: offsets Faust never handed out are read apart, none lost."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import OffsetAndMetadata

from pipeline.holes import HoleFiller
from pipeline.offsets import Lease, OffsetGate

pytestmark = pytest.mark.kafka


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
            handed: dict[int, bytes]) -> HoleFiller:
    async def accept(record: ConsumerRecord[bytes, bytes], lease: Lease) -> None:
        assert lease.live and record.value is not None
        handed[record.offset] = record.value
        lease.settle()

    return HoleFiller(gate, group_id=group, client_options={"bootstrap_servers": bootstrap},
                      accept=accept, assigned=lambda: [((topic, 0), 1)], ready=lambda: True,
                      idle_seconds=0.5)


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
    filler = _filler(gate, kafka_bootstrap, group, topic_name, handed)
    try:
        await filler.step()  # looks up the base (12), then reads the holes
        await asyncio.sleep(0.6)
        await filler.step()  # 26..29 never came either: the watch finds them once idle
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
        await filler.step()
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
        await filler.step()
    finally:
        await filler.close()
    assert handed == {} and gate.unbased() == [((topic_name, 0), 1)]
