"""The worker's long-lived parts, wired to the app's topics and tables."""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any, cast

from pipeline.app import (
    app,
    calls_topic,
    dead_letter_topic,
    integrations,
    integrations_topic,
    invalid_topic,
    ledger_table,
    mappings,
    mappings_topic,
    owns,
    results_topic,
    rosters,
    settings,
    tenant_state,
)
from pipeline.delivery.intake import MAX_CALL_RECORD_BYTES, TenantDirectory
from pipeline.delivery.lanes import LaneRegistry
from pipeline.delivery.ledger import TableLedger
from pipeline.delivery.outlets import Headers, TopicOutlets
from pipeline.delivery.routing import HomeRouter
from pipeline.delivery.tenantstate import StateStore
from pipeline.heap import HeapTrimmer, malloc_trim
from pipeline.observability.lag import LagMetrics
from pipeline.operations.control import ControlDesk
from pipeline.operations.replay import ReplayManager
from pipeline.operations.staff import Staff
from pipeline.operations.window import ReplayWindow
from pipeline.signing import RecordKind, RecordWriter, record_key
from schemas.control import CommandResult

__all__ = ["desk", "directory", "flush_durably", "heap", "keyring", "lag", "lanes", "ledger",
           "outlets", "records", "replays", "router", "staff", "states"]


async def _send_invalid(key: bytes | None, value: bytes, headers: Headers) -> object:
    # Awaited until the broker acknowledged it: a send the producer later fails (the broker
    # away too long) raises here, and the lane tries again, before the event is settled.
    return await (await invalid_topic.send(key=key, value=value, headers=headers))


async def _send_home(partition: int, key: bytes, value: bytes, headers: Headers,
                     stamp: float) -> object:
    return await (await calls_topic.send(key=key, value=value, partition=partition,
                                         headers=headers, timestamp=stamp))


async def _send_dead_letter(key: bytes | None, value: bytes, headers: Headers) -> object:
    return await (await dead_letter_topic.send(key=key, value=value, headers=headers))


async def flush_durably() -> None:
    """Return once everything produced so far (table changelogs, outlets) is acknowledged
    (Faust's buffer flush is made to drain fully in pipeline/app.py)."""
    await app.producer.flush()


async def _report(result: CommandResult) -> object:
    return await results_topic.send(key=result.command_id.encode(),
                                    value=result.model_dump_json().encode())


async def _publish_record(kind: RecordKind, key: bytes, value: bytes) -> object:
    topic = integrations_topic if kind == "integration" else mappings_topic
    return await topic.send(key=key, value=value)


# `python -m pipeline worker` refuses to start without these (config.require_worker_secrets).
_operator_key = settings.operator_key.get_secret_value().encode() \
    if settings.operator_key else None
_record_key = record_key(_operator_key) if _operator_key else None
keyring = settings.secrets.keyring()
lag = LagMetrics()
heap = HeapTrimmer(trim=malloc_trim())
outlets = TopicOutlets(send_invalid=_send_invalid, send_dead_letter=_send_dead_letter)
router = HomeRouter(_send_home, partitions=settings.topics.partitions,
                    max_value=MAX_CALL_RECORD_BYTES)
directory = TenantDirectory(integrations, mappings, cast(Mapping[str, Any], rosters),
                            keyring=keyring, record_key=_record_key)
records = RecordWriter(key=_record_key, keyring=keyring,
                       integrations=cast(MutableMapping[str, Any], integrations),
                       mappings=cast(MutableMapping[str, Any], mappings),
                       publish=_publish_record)
states = StateStore(cast(MutableMapping[str, Any], tenant_state))
ledger = TableLedger(cast(MutableMapping[str, Any], ledger_table),
                     durable=ledger_table.acknowledged)
lanes = LaneRegistry(settings=settings.crm, ledger=ledger,
                     outlets=outlets, states=states, buffer=settings.lane_buffer,
                     probe_interval=settings.broken_probe_seconds,
                     outage_probe_interval=settings.outage_probe_seconds)
_client_for = lanes.clients.borrow
replays = ReplayManager(bootstrap_servers=settings.kafka.bootstrap_servers,
                        client_options=settings.kafka.client_options(),
                        calls_topic=settings.topics.calls, directory=directory, lanes=lanes,
                        states=states, report=_report)


lanes.recovery = replays


async def _start_replay(tenant_id: str, command_id: str, window: ReplayWindow) -> None:
    await replays.start(tenant_id, command_id, window)


staff = Staff(directory=directory, records=records,
              rosters=cast(MutableMapping[str, Any], rosters), client_for=_client_for)
desk = ControlDesk(
    operator_key=_operator_key, directory=directory, records=records, keyring=keyring,
    states=states, lanes=lanes, report=_report, start_replay=_start_replay,
    client_for=_client_for, staff=staff)


@app.on_before_shutdown.connect
async def _stop_lanes(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
    await replays.stop()
    await lanes.stop()
    # What stopped lanes gathered for this worker's tenants goes out with Faust's last flush.
    ledger.write_where(owns)
