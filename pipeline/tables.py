"""A Faust table keyed `tenant|…`, on the partition of its tenant, writable from anywhere."""

from __future__ import annotations

from typing import Any

import faust
from aiokafka.partitioner import DefaultPartitioner

__all__ = ["TenantTable", "tenant_partition"]

_partitioner = DefaultPartitioner()


def tenant_partition(tenant_id: str, partitions: int) -> int:
    """The partition a record keyed by `tenant_id` lands on (murmur2, as Kafka producers do)."""
    every = list(range(partitions))
    return int(_partitioner(tenant_id.encode(), every, every))


class TenantTable(faust.Table[str, Any]):
    """Keys start with the tenant id; each lives on that tenant's partition of the call topic,
    so the worker that owns a tenant's calls owns its entries, and writes need no stream event
    (tenant lanes write after the event's iteration has moved on)."""

    def partition_for_key(self, key: Any) -> int:
        tenant = str(key).split("|", 1)[0]
        return tenant_partition(tenant, int(self.partitions or self.app.conf.topic_partitions))
