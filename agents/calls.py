"""deliver_calls: every call record, validated and handed to its tenant's delivery lane."""

from __future__ import annotations

import functools
import logging
import time
from typing import Any

from pipeline.app import app, calls_topic, is_steady, owns, settings
from pipeline.delivery.intake import accept_call, divert
from pipeline.delivery.routing import Moved
from pipeline.delivery.work import SourceRef
from pipeline.observability.metrics import EVENTS_CONSUMED
from pipeline.runtime import (
    directory,
    flush_durably,
    lag,
    lanes,
    ledger,
    outlets,
    replays,
    router,
)
from pipeline.streams.committer import Committer
from pipeline.streams.holes import HoleFiller, InOrder
from pipeline.streams.offsets import Lease, OffsetGate, PartitionKey
from pipeline.streams.tables import tenant_partition

log = logging.getLogger(__name__)

# The call topic is read without Faust's acks (streams/offsets.py): callsync commits each
# partition only up to its first event whose outcome is not yet durable.
gate = OffsetGate()


async def _commit(points: dict[PartitionKey, int]) -> bool:
    from faust.types import TP

    consumer: Any = app.consumer  # Faust's own commit, without its ack bookkeeping
    return bool(await consumer._commit({TP(t, p): o for (t, p), o in points.items()}))


committer = Committer(gate, flush=flush_durably, commit=_commit)


def _seconds(timestamp: float | None) -> float:
    """Faust gives the record's timestamp in seconds; a record without one waits from now."""
    return float(timestamp) if timestamp and timestamp > 0 else time.time()


# A replay stops where its tenant moved to another worker (the new owner resumes it), and
# waits while a rebalance or a table recovery is under way.
replays.owns = owns
replays.steady = is_steady


async def _accept(raw: bytes | None, key: bytes | None, source: SourceRef, lease: Lease) -> None:
    if not lease.live:
        return  # read before, or out of turn: its first read (or its next owner) handles it
    home = router.away(key, raw, source.partition)
    if home is not None and raw and key:
        # Its tenant's config, ledger and lane are on `home`'s owner (pipeline/delivery/routing.py).
        if not lease.start():
            return
        moved = await router.send_home(raw=raw, key=key, home=home, stamp=lease.stamp,
                                       live=lambda: lease.live,
                                       where=f"{source.topic}/{source.partition}/{source.offset}")
        if moved is Moved.HOME:
            lease.settle()
            return
        if moved is Moved.STOPPED:
            lease.abandon()
            return
    try:
        await accept_call(raw=raw, key=key, source=source, ack=lease.settle, lease=lease,
                          directory=directory, lanes=lanes, outlets=outlets)
    except Exception as exc:
        log.exception("call record %s could not be handled", source)
        await divert(outlets, raw=raw, key=key, source=source,
                     reason=f"internal:{type(exc).__name__}", tenant_id=None, ack=lease.settle)


async def _admit(raw: bytes | None, key: bytes | None, source: SourceRef, lease: Lease) -> None:
    """A live record goes to its lane in offset order: after any record below it that is still
    to be read (pipeline/streams/holes.py)."""
    if not lease.live:
        return
    partition = (source.topic, source.partition)
    if gate.behind(partition, source.offset):
        holes.wake()
    await order.admit(partition, source.offset, functools.partial(_accept, raw, key, source,
                                                                  lease))


@app.agent(calls_topic)
async def deliver_calls(stream: Any) -> None:
    async for event in stream.events():
        message = event.message
        EVENTS_CONSUMED.labels(message.topic).inc()
        lease = gate.read(message.topic, message.partition, message.offset,
                          generation=message.generation_id or 0,
                          stamp=_seconds(message.timestamp))
        await _admit(event.value, event.key,
                     SourceRef(message.topic, message.partition, message.offset), lease)


async def _accept_unhanded(record: Any, lease: Lease) -> None:
    EVENTS_CONSUMED.labels(record.topic).inc()
    await _admit(record.value, record.key,
                 SourceRef(record.topic, record.partition, record.offset), lease)


def _assigned() -> list[tuple[PartitionKey, int]]:
    topic = calls_topic.get_topic_name()
    generation = app.consumer_generation_id
    return [((tp.topic, tp.partition), generation) for tp in app.assignor.assigned_actives()
            if tp.topic == topic]


# Offsets Faust skipped (see pipeline/streams/offsets.py) are read apart and handed to the lanes.
order = InOrder(gate)
holes = HoleFiller(gate, group_id=settings.app_id, client_options=settings.kafka.client_options(),
                   accept=_accept_unhanded, assigned=_assigned, ready=is_steady, order=order)


@app.task  # type: ignore[untyped-decorator]
async def read_unhanded_offsets() -> None:
    await holes.run()


@app.timer(interval=1.0)  # type: ignore[untyped-decorator]
async def commit_settled() -> None:
    try:
        await committer.commit()
    except Exception:
        log.exception("committing the call topic's settled offsets failed")


def _release_wait() -> float:
    """How long a rebalance waits for the revoked partitions' work under way. A revoked work
    stops before its next CRM request, so the wait is for one request at most (its deadline),
    well inside the group's rebalance timeout."""
    return min(max(settings.kafka.session_timeout_seconds / 4,
                   settings.crm.timeout_seconds + 2.0), 30.0)


@app.on_partitions_revoked.connect
async def _release(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
    revoked = args[0] if args else kwargs.get("revoked", set())
    topic = calls_topic.get_topic_name()
    keys = [(tp.topic, tp.partition) for tp in revoked if tp.topic == topic]
    gate.revoke(keys)
    lanes.drop_stale()
    gone = {partition for _, partition in keys}

    def moving(tenant_id: str) -> bool:
        return tenant_partition(tenant_id, settings.topics.partitions) in gone

    # Facts gathered for these partitions' events under way go out with the release's flush
    # (the next owner reads them); what is gathered after it is dropped, never written late.
    ledger.write_where(moving)
    await order.release_all()  # what waited for a hole of these is no longer this worker's
    try:
        await committer.release(keys, wait=_release_wait())
    except Exception:
        log.exception("committing revoked partitions failed; their next owner reads again")
    finally:
        ledger.drop_where(moving)
    lag.forget(topic, [p for _, p in keys])


@app.timer(interval=5.0)  # type: ignore[untyped-decorator]
async def publish_lag() -> None:
    try:
        topic = calls_topic.get_topic_name()
        assigned = [tp for tp in app.assignor.assigned_actives() if tp.topic == topic]
        highwaters = []
        for tp in assigned:
            highwater = app.consumer.highwater(tp)
            if highwater is not None:
                highwaters.append((tp.partition, int(highwater)))
        lag.publish(topic, gate, highwaters)
    except Exception:
        log.exception("publishing the consumer lag failed")
