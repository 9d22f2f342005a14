"""The tenant tables hold their records compressed; every reader and the changelog see bytes."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from pipeline.app import app, integrations, ledger_table, mappings, rosters, tenant_state
from pipeline.streams.tables import CompactStore, ZlibValues

RECORD = b'{"body":{"kind":"mapping","record":{"employees":{' + b",".join(
    b'"e%d":{"crm_user_id":%d,"extension":"%d"}' % (n, 1000 + n, 100 + n)
    for n in range(50)) + b'}}},"signature":"00"}'


def test_bytes_are_held_compressed_and_handed_out_as_given() -> None:
    values = ZlibValues()
    values["acme"] = RECORD
    assert values["acme"] == RECORD and values.get("acme") == RECORD
    assert len(values._data["acme"]) < len(RECORD) / 3
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
