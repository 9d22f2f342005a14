"""store_integrations / store_mappings: the tenant tables, fed only with desk-signed records."""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from pydantic import ValidationError

from pipeline.app import app, integrations, integrations_topic, mappings, mappings_topic
from pipeline.delivery.intake import describe_invalid, divert
from pipeline.delivery.work import SourceRef
from pipeline.observability.metrics import TENANT_UPDATES
from pipeline.runtime import directory, outlets
from pipeline.secrets import SecretError
from pipeline.signing import RecordKind, RecordRefused, signed_at_of, stored_form

log = logging.getLogger(__name__)
SECRET_FIELDS = frozenset({"api_key"})


def _redacted(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: "[redacted]" if k in SECRET_FIELDS else _redacted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redacted(v) for v in value]
    return value


def config_copy(raw: bytes | None) -> bytes:
    """What the invalid topic may keep of a tenant record: never an API key, at any depth
    (a signed record carries it in body.record.api_key). Never raises: a record nested deeper
    than the redaction can walk is not copied either."""
    try:
        parsed = json.loads(raw or b"")
        if isinstance(parsed, dict):
            return json.dumps(_redacted(parsed)).encode()
    except (ValueError, RecursionError):
        pass
    digest = hashlib.sha256(raw or b"").hexdigest()
    return json.dumps({"redacted": "not a JSON object (or nested too deep); the body is not copied",
                       "sha256": digest}).encode()


def _open(kind: RecordKind, value: Any) -> str:
    """The tenant id of a verified record; raises what makes it unusable."""
    if kind == "integration":
        return directory.open_config(value).tenant_id
    return directory.open_mapping(value).tenant_id


async def _store(event: Any, table: Any, kind: RecordKind) -> None:
    message = event.message
    source = SourceRef(message.topic, message.partition, message.offset)
    raw = event.value
    copy = config_copy(raw)

    async def refuse(reason: str, tenant_id: str | None) -> None:
        log.warning("refused the %s record at %s: %s", kind, source, reason)
        await divert(outlets, raw=copy, key=event.key, source=source, reason=reason,
                     tenant_id=tenant_id)

    try:
        key = event.key.decode() if isinstance(event.key, bytes) else None
    except UnicodeDecodeError:
        await refuse("key_mismatch: the record key is not UTF-8", None)
        return
    if not raw:  # a tombstone cannot be signed: tenants are deactivated by a command
        await refuse("unsigned: a tombstone cannot be verified; tenant records change only "
                     "through signed operator commands", key)
        return
    try:
        value = json.loads(raw)
    except ValueError:
        await refuse("undecodable: the record is not JSON", key)
        return
    except RecursionError:
        await refuse("undecodable: the record is nested too deep to read", key)
        return
    try:
        tenant_id = _open(kind, value)
    except RecordRefused as exc:
        await refuse(str(exc), key)
        return
    except SecretError as exc:
        await refuse(f"undecryptable: {exc}", key)
        return
    except ValidationError as exc:
        await refuse(describe_invalid(exc), key)
        return
    except ValueError as exc:
        await refuse(f"schema: {exc}", key)
        return
    if key != tenant_id:
        await refuse(f"key_mismatch: key is not tenant_id {tenant_id!r}", tenant_id)
        return
    signed_at = signed_at_of(value, kind=kind, key=directory.record_key)
    stored_at = signed_at_of(table.get(tenant_id), kind=kind, key=directory.record_key)
    if signed_at is not None and stored_at is not None and signed_at < stored_at:
        await refuse(f"stale: signed at {signed_at.isoformat()}, before the stored record "
                     f"({stored_at.isoformat()})", tenant_id)
        return
    table[tenant_id] = stored_form(value)  # kept as compact bytes, parsed where used
    TENANT_UPDATES.labels(table.name).inc()
    log.info("%s updated for tenant %s from %s", table.name, tenant_id, source)


async def _store_safely(event: Any, table: Any, kind: RecordKind) -> None:
    try:
        await _store(event, table, kind)
    except Exception as exc:
        message = event.message
        source = SourceRef(message.topic, message.partition, message.offset)
        log.exception("%s record %s could not be handled", table.name, source)
        await divert(outlets, raw=config_copy(event.value), key=event.key, source=source,
                     tenant_id=None, reason=f"internal:{type(exc).__name__}")


@app.agent(integrations_topic)
async def store_integrations(stream: Any) -> None:
    async for event in stream.events():
        await _store_safely(event, integrations, "integration")


@app.agent(mappings_topic)
async def store_mappings(stream: Any) -> None:
    async for event in stream.events():
        await _store_safely(event, mappings, "mapping")
