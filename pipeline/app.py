"""The Faust app: its topics and tables, built from the settings. Agents live in `agents/`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import faust
from aiohttp import web as aiohttp_web
from faust.transport.producer import ProducerBuffer
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from pipeline.config import load_settings
from pipeline.observability.logs import logging_config, redactor
from pipeline.observability.metrics import READY
from pipeline.streams.consumer import App
from pipeline.streams.tables import CompactTable, CompactTenantTable, TenantTable, tenant_partition

__all__ = [
    "app", "calls_topic", "control_topic", "dead_letter_topic", "integrations",
    "integrations_topic", "invalid_topic", "ledger_table", "mappings", "mappings_topic",
    "results_topic", "rosters", "settings", "tenant_state",
]

settings = load_settings()
# The worker's port serves these and nothing else: Faust's own views (tables, router, graph,
# stats) would show table contents, API keys included, to anyone who reaches the port.
SERVED_PATHS = frozenset({"/metrics", "/healthz", "/readyz"})


@aiohttp_web.middleware
async def _only_served_paths(request: aiohttp_web.Request,
                             handler: Callable[[aiohttp_web.Request],
                                               Awaitable[aiohttp_web.StreamResponse]]
                             ) -> aiohttp_web.StreamResponse:
    if request.path not in SERVED_PATHS:
        return aiohttp_web.Response(status=404, text="not found")
    return await handler(request)

_topics = settings.topics
_partitions = _topics.partitions

app = App(
    settings.app_id,
    fetch_wait_ms=settings.kafka.fetch_wait_ms,
    broker=[f"kafka://{server.strip()}" for server in settings.kafka.bootstrap_servers.split(",")],
    store="memory://",
    autodiscover=["agents"],
    origin="pipeline",
    topic_partitions=_partitions,
    topic_replication_factor=settings.replication_factor,
    topic_allow_declare=True,
    web_enabled=settings.metrics_port > 0,
    web_port=settings.metrics_port or 6066,
    web_bind=settings.metrics_bind,
    web_in_thread=False,
    web_application_options={"middlewares": [_only_served_paths]},
    web_router_enabled=False,
    web_tables_enabled=False,
    web_graph_enabled=False,
    web_stats_enabled=False,
    web_metrics_enabled=False,
    consumer_auto_offset_reset="earliest",
    # No standby copies of other workers' table partitions: faust-streaming 0.15.3's recovery
    # seeks a standby partition added while it runs to offset None and crashes the worker
    # (seen in the fault suite's rebalance: `Offset must be a positive integer`). A partition
    # taken over is read from its changelog instead, and no worker holds a second copy.
    table_standby_replicas=0,
    producer_acks=-1,
    broker_credentials=settings.kafka.faust_credentials(),
    broker_session_timeout=settings.kafka.session_timeout_seconds,
    broker_heartbeat_interval=settings.kafka.session_timeout_seconds / 10,
    datadir=settings.data_dir,
    logging_config=logging_config(json_lines=settings.log_json),
)
if settings.operator_key is not None:
    redactor.register(settings.operator_key.get_secret_value())
if settings.secrets.keys is not None:  # the KEKs as they are written: kid:base64,…
    for _kek in settings.secrets.keys.get_secret_value().split(","):
        redactor.register(_kek.partition(":")[2].strip())
redactor.mask_phones = not settings.log_phone_numbers
if settings.kafka.sasl_password is not None:
    redactor.register(settings.kafka.sasl_password.get_secret_value())


async def _drain(buffer: Any) -> None:
    # faust-streaming 0.15.3's ProducerBuffer.flush returns once 0.1 s pass without a message
    # leaving the buffer (a busy loop, a slow broker), with messages still in it; its producer
    # flush, and so every commit (Faust's and callsync's), would then pass table changelog
    # records that were never sent. Drain it fully instead.
    while buffer.size:
        await buffer.flush_atmost(None)


ProducerBuffer.flush = _drain  # type: ignore[method-assign,assignment]


def _topic(name: str, *, partitions: int, retention: timedelta | None = None,
           compacting: bool | None = None, acks: bool = True) -> faust.TopicT:
    # Raw bytes in and out: every record is validated by callsync itself, so a bad one becomes
    # an invalid event with a reason instead of a crashed agent.
    return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw",
                     value_serializer="raw", internal=True, partitions=partitions,
                     retention=retention, compacting=compacting, acks=acks)


# Without Faust's acks: callsync commits the call topic itself (pipeline/streams/offsets.py).
calls_topic = _topic(_topics.calls, partitions=_partitions, acks=False,
                     retention=timedelta(days=_topics.calls_retention_days))
integrations_topic = _topic(_topics.integrations, partitions=_partitions, compacting=True)
mappings_topic = _topic(_topics.mappings, partitions=_partitions, compacting=True)
invalid_topic = _topic(_topics.invalid, partitions=_partitions, retention=timedelta(days=30))
dead_letter_topic = _topic(_topics.dead_letter, partitions=_partitions,
                           retention=timedelta(days=30))
# Keyed by tenant like the calls: a command runs where the tenant's lane and tables live.
control_topic = _topic(_topics.control, partitions=_partitions, retention=timedelta(days=7))
results_topic = _topic(_topics.results, partitions=1, retention=timedelta(days=7))

# The tenant records are kept as their JSON bytes (pipeline.signing.stored_form), compressed in
# memory, and parsed only for the tenants in use: as dicts they were most of a worker's memory.
# The changelog carries the bytes the JSON serializer wrote before, so either reads the other.
integrations = CompactTable(app, name="integrations", partitions=_partitions, key_type=str,
                            value_type=bytes, beacon=app.tables.beacon)
mappings = CompactTable(app, name="mappings", partitions=_partitions, key_type=str,
                        value_type=bytes, beacon=app.tables.beacon)
app.tables.add(integrations)
app.tables.add(mappings)
rosters = app.tables.add(CompactTenantTable(app, name="rosters", partitions=_partitions,
                                            key_type=str, value_type=bytes,
                                            beacon=app.tables.beacon))
# Values are JSON objects (the app's default serializer), read through callsync's own models.
tenant_state = app.tables.add(TenantTable(app, name="tenant-state", partitions=_partitions,
                                          key_type=str, beacon=app.tables.beacon))
ledger_table = TenantTable(app, name="ledger", partitions=_partitions, key_type=str,
                           beacon=app.tables.beacon)
app.tables.add(ledger_table)


@app.page("/metrics")
async def metrics(web: View, request: Request) -> Response:
    READY.set(1 if is_ready() else 0)
    return web.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])


def owns(tenant_id: str) -> bool:
    """This worker reads the tenant's partition of the call topic (and so owns its lane)."""
    partition = tenant_partition(tenant_id, settings.topics.partitions)
    topic = calls_topic.get_topic_name()
    return any(tp.topic == topic and tp.partition == partition
               for tp in app.assignor.assigned_actives())


def is_steady() -> bool:
    """No rebalance under way and the tables recovered (Faust's flow control resumed). Work
    that reads the tenant tables outside an agent's stream waits for it: during a recovery a
    tenant's integration can be back while its mapping is not, and a call planned then has no
    senior manager."""
    return not app.rebalancing and app.flow_control.is_active()


def is_ready() -> bool:
    """Partitions assigned, no rebalance under way, tables recovered."""
    # `recovery` is on the TableManager, not on the abstract type mypy sees.
    recovery = app.tables.recovery  # type: ignore[attr-defined]
    return (bool(app.assignor.assigned_actives()) and not app.rebalancing
            and not recovery.in_recovery and recovery.completed.is_set())


@app.page("/healthz")
async def healthz(web: View, request: Request) -> Response:
    # Answering at all means the event loop turns: that is what liveness asks.
    return web.json({"status": "alive"})


@app.page("/readyz")
async def readyz(web: View, request: Request) -> Response:
    ready = is_ready()
    READY.set(1 if ready else 0)
    return web.json({"ready": ready, "partitions": len(app.assignor.assigned_actives()),
                     "rebalancing": bool(app.rebalancing)}, status=200 if ready else 503)
