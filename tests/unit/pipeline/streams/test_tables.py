"""The tenant tables hold their records compressed; every reader and the changelog see bytes.
A sync waits for the changelog records of its own keys' partitions."""

from __future__ import annotations

import asyncio
import zlib
from types import SimpleNamespace
from typing import Any

from faust.tables.base import Collection

from pipeline.app import app, integrations, ledger_table, mappings, rosters, tenant_state
from pipeline.streams.tables import (
    CompactStore,
    ZlibValues,
    tenant_partition,
    value_version,
    version_reader,
)

RECORD = b'{"body":{"kind":"mapping","record":{"employees":{' + b",".join(
    b'"e%d":{"crm_user_id":%d,"extension":"%d"}' % (n, 1000 + n, 100 + n)
    for n in range(50)) + b'}}},"signature":"00"}'


def test_bytes_are_held_compressed_and_handed_out_as_given() -> None:
    values = ZlibValues()
    values["acme"] = RECORD
    assert values["acme"] == RECORD and values.get("acme") == RECORD
    assert len(values._data["acme"]) < len(RECORD) / 3
    # The smaller window and hash table cost nothing in size for a record like this.
    assert len(values._data["acme"]) <= len(zlib.compress(RECORD)) + 8
    assert dict(values.items()) == {"acme": RECORD} and list(values) == ["acme"]
    values["gone"] = None  # a tombstone during recovery, before it is dropped
    assert values["gone"] is None and "gone" in values and len(values) == 2
    del values["gone"]
    assert "gone" not in values and values.get("gone") is None


def test_the_tenant_record_tables_use_the_compact_store_and_the_others_do_not() -> None:
    compact: tuple[Any, ...] = (integrations, mappings, rosters)
    others: tuple[Any, ...] = (tenant_state, ledger_table)
    for table in compact:
        assert isinstance(table.data, CompactStore), table.name
        assert table.value_serializer == "raw", "the changelog carries the bytes as they are"
    for table in others:
        assert not isinstance(table.data, CompactStore), table.name


def test_a_compact_table_s_version_follows_its_value_without_inflating_it() -> None:
    key = "version-test"
    store = integrations.data
    try:
        assert integrations.version(key) is None
        store[key] = RECORD
        first = integrations.version(key)
        assert first is not None and first == integrations.version(key)
        store[key] = RECORD.replace(b"e49", b"e50")
        assert integrations.version(key) not in (None, first)
        store[key] = RECORD
        assert integrations.version(key) == first, "the same value, the same version"
        assert version_reader(integrations) == integrations.version
    finally:
        store.pop(key, None)
    plain = {"a": RECORD}
    assert version_reader(plain)("a") == value_version(RECORD) and \
        version_reader(plain)("b") is None


def test_a_tenant_s_partition_is_kafka_s_for_each_partition_count() -> None:
    from aiokafka.partitioner import DefaultPartitioner

    partitioner = DefaultPartitioner()
    for partitions in (4, 6, 4, 12):  # asked again: kept per count, not per tenant alone
        every = list(range(partitions))
        for tenant in ("acme", "globex", "initech", "t-42"):
            assert tenant_partition(tenant, partitions) == \
                partitioner(tenant.encode(), every, every)


def _event(key: str, value: bytes | None, partition: int = 0) -> Any:
    return SimpleNamespace(key=key, value=value,
                           message=SimpleNamespace(value=value, partition=partition))


def test_a_recovered_changelog_reads_back_the_same_bytes_and_tombstones_delete() -> None:
    store = CompactStore("memory://", app, integrations, table_name="recovery-test")
    store.apply_changelog_batch([_event("acme", RECORD), _event("globex", RECORD)],
                                to_key=lambda k: k, to_value=lambda v: v)
    assert store["acme"] == store.get("acme") == RECORD and len(store) == 2
    store.apply_changelog_batch([_event("globex", None)], to_key=lambda k: k,
                                to_value=lambda v: v)
    assert "globex" not in store and list(store.keys()) == ["acme"]


async def test_acknowledged_waits_for_the_last_record_sent_to_each_key_s_partition(
        monkeypatch: Any) -> None:
    sent: list[tuple[int, str, asyncio.Future[None]]] = []

    def send_changelog(self: Any, partition: int, key: str, value: Any, *_: Any) -> Any:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        sent.append((partition, key, future))
        return future

    monkeypatch.setattr(Collection, "send_changelog", send_changelog)
    monkeypatch.setattr(ledger_table, "_last_sent", {})
    partitions = int(ledger_table.partitions or app.conf.topic_partitions)
    acme = "acme"
    other = next(f"t{n}" for n in range(100)
                 if tenant_partition(f"t{n}", partitions) != tenant_partition(acme, partitions))
    ledger_table.send_changelog(tenant_partition(acme, partitions), "acme|c1", {}, None, None)
    ledger_table.send_changelog(tenant_partition(acme, partitions), "acme|c2", {}, None, None)
    ledger_table.send_changelog(tenant_partition(other, partitions), f"{other}|c9", {}, None,
                                None)
    (_, _, c1), (_, _, c2), (_, _, c9) = sent

    waiter = asyncio.ensure_future(ledger_table.acknowledged(["acme|c1"]))
    c1.set_result(None)
    await asyncio.sleep(0.01)
    assert not waiter.done(), "c2, sent after c1 to its partition, is not acknowledged yet"
    c2.set_result(None)
    await asyncio.wait_for(waiter, 10)  # the other partition's record is not waited for
    assert not c9.done()

    cancelled = asyncio.ensure_future(ledger_table.acknowledged([f"{other}|c9"]))
    await asyncio.sleep(0.01)
    cancelled.cancel()
    await asyncio.gather(cancelled, return_exceptions=True)
    assert not c9.cancelled(), "a waiter given up leaves the send itself alone"
    used = {tenant_partition(acme, partitions), tenant_partition(other, partitions)}
    quiet = next(f"q{n}" for n in range(100) if tenant_partition(f"q{n}", partitions) not in used)
    await asyncio.wait_for(ledger_table.acknowledged([f"{quiet}|c0"]), 10)  # nothing sent there
