"""callsync's Faust tables: keyed `tenant|…` on the tenant's partition; tenant records held
compressed."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from typing import Any

import faust
from aiokafka.partitioner import DefaultPartitioner
from faust.stores.memory import Store as MemoryStore
from faust.types import CodecArg, FutureMessage, StoreT
from yarl import URL

__all__ = ["CompactStore", "CompactTable", "CompactTenantTable", "TenantTable", "ZlibValues",
           "tenant_partition", "value_version", "version_reader"]

_partitioner = DefaultPartitioner()


@functools.lru_cache(maxsize=4096)
def tenant_partition(tenant_id: str, partitions: int) -> int:
    """The partition a record keyed by `tenant_id` lands on (murmur2, as Kafka producers do).
    Asked for every ledger write; aiokafka's murmur2 is Python, 1 % of a busy worker's CPU: the
    tenants calling now are kept (4,096 of them, about 0.6 MB)."""
    every = list(range(partitions))
    return int(_partitioner(tenant_id.encode(), every, every))


class TenantTable(faust.Table[str, Any]):
    """Keys start with the tenant id; each lives on that tenant's partition of the call topic,
    so the worker that owns a tenant's calls owns its entries, and writes need no stream event
    (tenant lanes write after the event's iteration has moved on)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._last_sent: dict[int, FutureMessage] = {}  # per changelog partition

    def partition_for_key(self, key: Any) -> int:
        tenant = str(key).split("|", 1)[0]
        return tenant_partition(tenant, int(self.partitions or self.app.conf.topic_partitions))

    def send_changelog(self, partition: int | None, key: Any, value: Any,
                       key_serializer: CodecArg = None,
                       value_serializer: CodecArg = None) -> FutureMessage:
        sent = super().send_changelog(partition, key, value, key_serializer, value_serializer)
        if partition is not None:
            self._last_sent[partition] = sent
        return sent

    async def acknowledged(self, keys: Iterable[str]) -> None:
        """Return once the changelog records written so far for these keys are acknowledged by
        the broker, and with them every record written before them to their partitions: one
        producer sends a partition's records in order (Faust's buffer, then aiokafka, which
        keeps one batch per partition in flight), so the last one sent stands for them all.
        Unlike a flush of the producer, it does not wait for other partitions' records, nor for
        records written after it was called."""
        for partition in {self.partition_for_key(key) for key in keys}:
            sent = self._last_sent.get(partition)
            if sent is not None:
                await asyncio.shield(sent)  # a cancelled waiter leaves the send alone


def value_version(value: object) -> object:
    """What tells a stored value from any other: a digest of its bytes (a table hands out a
    fresh copy of them on every read), or the value itself; None for none."""
    return hashlib.blake2b(value, digest_size=16).digest() if isinstance(value, bytes) else value


class ZlibValues(MutableMapping[Any, Any]):
    """A dict that holds bytes values zlib-compressed and hands them out as they were given
    (other values as they are). A tenant's signed mapping of 50 employees is 3.1 KB of JSON
    and 0.55 KB compressed."""

    def __init__(self) -> None:
        self._data: dict[Any, Any] = {}

    def __getitem__(self, key: Any) -> Any:
        value = self._data[key]
        return zlib.decompress(value) if isinstance(value, bytes) else value

    def __setitem__(self, key: Any, value: Any) -> None:
        self._data[key] = _compress(value) if isinstance(value, bytes) else value

    def __delitem__(self, key: Any) -> None:
        del self._data[key]

    def version(self, key: Any) -> object:
        """`value_version` of the value held for `key`, read without inflating it: the digest
        of its compressed bytes (one value compresses to the same bytes)."""
        return value_version(self._data.get(key))

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __iter__(self) -> Iterator[Any]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


def _compress(value: bytes) -> bytes:
    """zlib's format with a 16 KB window and a small hash table, not the defaults' 32 KB and
    large one: setting those up was most of a compression (131 µs of a 3 KB mapping's, now
    about 45), paid for every record a restart reads back, for the same size of result.
    `zlib.decompress` reads either."""
    packer = zlib.compressobj(6, zlib.DEFLATED, 14, 5)
    return packer.compress(value) + packer.flush()


class CompactStore(MemoryStore[Any, Any]):
    """Faust's in-memory store over ZlibValues: the changelog and every reader still see the
    bytes themselves; only what is held in memory is compressed."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.data = ZlibValues()


class _Compact(faust.Table[str, Any]):
    def _new_store_by_url(self, url: str | URL) -> StoreT[Any, Any]:
        if URL(url).scheme != "memory":  # a store on disk keeps its own format
            return super()._new_store_by_url(url)
        return CompactStore(url, self.app, self, table_name=self.name,
                             key_type=self.key_type, key_serializer=self.key_serializer,
                             value_serializer=self.value_serializer, value_type=self.value_type,
                             loop=self.loop, options=self.options)

    def version(self, key: str) -> object:
        """`value_version` of the value held for `key`, inflated only if it must be."""
        values = getattr(self.data, "data", None)
        if isinstance(values, ZlibValues):
            return values.version(key)
        return value_version(self.get(key))


def version_reader(table: Mapping[str, Any]) -> Callable[[str], object]:
    """A reader of the version of what `table` holds for a key (None: nothing). A tenant's
    config, mapping and roster are looked up for every call: inflating and hashing the three
    to learn they had not changed was about 4 % of a worker's CPU on pop-ups."""
    if isinstance(table, _Compact | ZlibValues):
        return table.version
    return lambda key: value_version(table.get(key))


class CompactTable(_Compact):
    """A table of bytes values (value_type=bytes), held compressed in memory."""


class CompactTenantTable(_Compact, TenantTable):
    """A TenantTable of bytes values, held compressed in memory."""
