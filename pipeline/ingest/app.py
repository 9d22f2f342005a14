"""The ingest's aiohttp application: `POST /v1/calls`, `/healthz`, `/readyz`, `/metrics`."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError

from pipeline.config import IngestSettings
from pipeline.delivery.intake import describe_invalid
from pipeline.ingest.publisher import Busy, CallPublisher, PublishRefused
from pipeline.ingest.tokens import Producer, TokenFile
from pipeline.observability.metrics import INGEST_ACCEPTED, INGEST_REGISTRY, INGEST_REQUESTS
from pipeline.streams.producing import Record
from schemas.call_event import CallEvent

__all__ = ["INGEST", "Ingest", "make_app", "parse_events"]

log = logging.getLogger(__name__)
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="callsync-ingest"'}


@dataclass
class Ingest:
    settings: IngestSettings
    tokens: TokenFile
    publisher: CallPublisher


INGEST = web.AppKey("ingest", Ingest)


class Refusal(Exception):
    """An answer other than 202; its body holds no token and no input value."""

    def __init__(self, status: int, outcome: str, message: str, *,
                 headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.outcome, self.headers = status, outcome, headers or {}
        self.body = {"error": outcome, "message": message, **extra}


def _no_constants(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _field_errors(exc: ValidationError) -> list[dict[str, str]]:
    return [{"field": ".".join(str(p) for p in err["loc"]) or "(event)", "problem": err["msg"]}
            for err in exc.errors(include_url=False, include_input=False)]


def parse_events(body: bytes, *, max_events: int) -> list[tuple[CallEvent, bytes]]:
    """Each event with the bytes to publish: the item re-serialised, validated exactly as the
    worker will read it (`CallEvent.model_validate_json` of those bytes). Raises Refusal."""
    try:
        data = json.loads(body, parse_constant=_no_constants)
    except (ValueError, RecursionError) as exc:
        why = str(exc) if isinstance(exc, json.JSONDecodeError) else type(exc).__name__
        raise Refusal(400, "undecodable", f"the body is not JSON: {why}") from None
    items = data if isinstance(data, list) else [data]
    if not items:
        raise Refusal(400, "invalid", "the array holds no event")
    if len(items) > max_events:
        raise Refusal(413, "too_large", f"{len(items)} events; at most {max_events} per request")
    parsed: list[tuple[CallEvent, bytes]] = []
    errors = []
    for index, item in enumerate(items):
        raw = json.dumps(item, ensure_ascii=True, separators=(",", ":")).encode()
        try:
            parsed.append((CallEvent.model_validate_json(raw), raw))
        except ValidationError as exc:
            errors.append({"index": index, "reason": describe_invalid(exc),
                           "fields": _field_errors(exc)})
    if errors:
        raise Refusal(400, "invalid", f"{len(errors)} of {len(items)} events do not fit the "
                      "call event contract; none was published", errors=errors)
    return parsed


def _producer_of(request: web.Request, tokens: TokenFile) -> Producer:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    producer = tokens.authenticate(token) if scheme.lower() == "bearer" and token else None
    if producer is None:  # missing, malformed, unknown and revoked read the same
        raise Refusal(401, "unauthorized", "a valid producer token is required "
                      "(Authorization: Bearer <token>)", headers=CHALLENGE)
    return producer


async def _body(request: web.Request, limit: int) -> bytes:
    if request.content_type != "application/json":
        raise Refusal(415, "unsupported_media_type", "send Content-Type: application/json")
    if request.content_length is not None and request.content_length > limit:
        raise Refusal(413, "too_large", f"the body is over {limit} bytes")
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise Refusal(413, "too_large", f"the body is over {limit} bytes") from None


def _record(event: CallEvent, raw: bytes) -> Record:
    # Keyed by tenant and stamped with the call's start, like `python -m pipeline produce`.
    return event.tenant_id.encode(), raw, int(event.started_at.timestamp() * 1000)


async def post_calls(request: web.Request) -> web.Response:
    ingest = request.app[INGEST]
    producer: Producer | None = None
    try:
        producer = _producer_of(request, ingest.tokens)
        body = await _body(request, ingest.settings.max_body_bytes)
        events = parse_events(body, max_events=ingest.settings.max_events)
        outside = sorted({e.tenant_id for e, _ in events if not producer.allows(e.tenant_id)})
        if outside:
            raise Refusal(403, "forbidden_tenant", f"this token may not publish for "
                          f"{', '.join(outside)}; nothing was published", tenants=outside)
        try:
            await ingest.publisher.publish([_record(e, raw) for e, raw in events])
        except PublishRefused as exc:
            status, outcome = (429, "busy") if isinstance(exc, Busy) else (503, "unavailable")
            raise Refusal(status, outcome, f"{exc}; send the request again later",
                          headers={"Retry-After": str(exc.retry_after)}) from None
    except Refusal as refusal:
        INGEST_REQUESTS.labels(refusal.outcome).inc()
        who = producer.name if producer else "(no valid token)"
        log.info("POST /v1/calls from %s: %s %s", who, refusal.status, refusal.outcome)
        return web.json_response(refusal.body, status=refusal.status, headers=refusal.headers)
    INGEST_REQUESTS.labels("accepted").inc()
    INGEST_ACCEPTED.labels(producer.name).inc(len(events))
    return web.json_response({"accepted": len(events)}, status=202)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "alive"})


async def readyz(request: web.Request) -> web.Response:
    ready, why = await request.app[INGEST].publisher.ready()
    return web.json_response({"ready": ready, "reason": why}, status=200 if ready else 503)


async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(INGEST_REGISTRY),
                        content_type=CONTENT_TYPE_LATEST.split(";")[0])


async def _start(app: web.Application) -> None:
    await app[INGEST].publisher.start()


async def _stop(app: web.Application) -> None:
    await app[INGEST].publisher.stop()


def make_app(ingest: Ingest) -> web.Application:
    # client_max_size: aiohttp itself refuses a longer body, also one sent chunked.
    app = web.Application(client_max_size=ingest.settings.max_body_bytes)
    app[INGEST] = ingest
    app.router.add_post("/v1/calls", post_calls)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.on_startup.append(_start)
    app.on_cleanup.append(_stop)
    return app
