"""store_integrations / store_mappings: the tenant tables, fed from their compacted topics."""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from pydantic import BaseModel, ValidationError

from pipeline.app import app, integrations, integrations_topic, mappings, mappings_topic
from pipeline.delivery import SourceRef
from pipeline.intake import describe_invalid, divert
from pipeline.metrics import TENANT_UPDATES
from pipeline.runtime import outlets
from schemas.integration import IntegrationConfig
from schemas.mapping import EmployeeMapping

log = logging.getLogger(__name__)
SECRET_FIELDS = ("api_key",)


def config_copy(raw: bytes | None) -> bytes:
    """What the invalid topic may keep of a config record: never its API key."""
    try:
        parsed = json.loads(raw or b"")
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        return json.dumps({k: ("[redacted]" if k in SECRET_FIELDS else v)
                           for k, v in parsed.items()}).encode()
    digest = hashlib.sha256(raw or b"").hexdigest()
    return json.dumps({"redacted": "not a JSON object; the body is not copied",
                       "sha256": digest}).encode()


async def _store(event: Any, table: Any, model: type[BaseModel]) -> None:
    message = event.message
    source = SourceRef(message.topic, message.partition, message.offset)
    raw = event.value
    copy = config_copy(raw) if model is IntegrationConfig else raw
    try:
        key = event.key.decode() if isinstance(event.key, bytes) else None
    except UnicodeDecodeError:
        await divert(outlets, raw=copy, key=event.key, source=source, tenant_id=None,
                     reason="key_mismatch: the record key is not UTF-8")
        return
    if not raw:  # a tombstone removes the tenant
        if key:
            table.pop(key, None)
        return
    try:
        parsed = model.model_validate_json(raw)
    except ValidationError as exc:
        await divert(outlets, raw=copy, key=event.key, source=source,
                     reason=describe_invalid(exc), tenant_id=key)
        return
    tenant_id = str(getattr(parsed, "tenant_id"))  # noqa: B009 - both models have it
    if key != tenant_id:
        await divert(outlets, raw=copy, key=event.key, source=source,
                     reason=f"key_mismatch: key is not tenant_id {tenant_id!r}",
                     tenant_id=tenant_id)
        return
    stored = parsed.to_stored() if isinstance(parsed, IntegrationConfig) else \
        parsed.model_dump(mode="json")
    table[tenant_id] = stored
    TENANT_UPDATES.labels(table.name).inc()
    log.info("%s updated for tenant %s from %s", table.name, tenant_id, source)


async def _store_safely(event: Any, table: Any, model: type[BaseModel]) -> None:
    try:
        await _store(event, table, model)
    except Exception as exc:
        message = event.message
        source = SourceRef(message.topic, message.partition, message.offset)
        log.exception("%s record %s could not be handled", table.name, source)
        await divert(outlets, raw=config_copy(event.value) if model is IntegrationConfig
                     else event.value, key=event.key, source=source, tenant_id=None,
                     reason=f"internal:{type(exc).__name__}")


@app.agent(integrations_topic)
async def store_integrations(stream: Any) -> None:
    async for event in stream.events():
        await _store_safely(event, integrations, IntegrationConfig)


@app.agent(mappings_topic)
async def store_mappings(stream: Any) -> None:
    async for event in stream.events():
        await _store_safely(event, mappings, EmployeeMapping)
