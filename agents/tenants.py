"""store_integrations / store_mappings: the tenant tables, fed from their compacted topics."""

from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel, ValidationError

from pipeline.app import app, integrations, integrations_topic, mappings, mappings_topic
from pipeline.delivery import SourceRef
from pipeline.intake import describe_invalid
from pipeline.metrics import TENANT_UPDATES
from pipeline.runtime import outlets
from schemas.integration import IntegrationConfig
from schemas.mapping import EmployeeMapping

log = logging.getLogger(__name__)


async def _store(event: Any, table: Any, model: type[BaseModel]) -> None:
    message = event.message
    source = SourceRef(message.topic, message.partition, message.offset)
    key = event.key.decode() if isinstance(event.key, bytes) else None
    if not event.value:  # a tombstone removes the tenant
        if key:
            table.pop(key, None)
        return
    try:
        parsed = model.model_validate_json(event.value)
    except ValidationError as exc:
        await outlets.invalid(raw=event.value, key=event.key, source=source,
                              reason=describe_invalid(exc), tenant_id=key)
        return
    tenant_id = str(getattr(parsed, "tenant_id"))  # noqa: B009 - both models have it
    if key != tenant_id:
        await outlets.invalid(raw=event.value, key=event.key, source=source,
                              reason=f"key_mismatch: key is not tenant_id {tenant_id!r}",
                              tenant_id=tenant_id)
        return
    stored = parsed.to_stored() if isinstance(parsed, IntegrationConfig) else \
        parsed.model_dump(mode="json")
    table[tenant_id] = stored
    TENANT_UPDATES.labels(table.name).inc()
    log.info("%s updated for tenant %s from %s", table.name, tenant_id, source)


@app.agent(integrations_topic)
async def store_integrations(stream: Any) -> None:
    async for event in stream.events():
        await _store(event, integrations, IntegrationConfig)


@app.agent(mappings_topic)
async def store_mappings(stream: Any) -> None:
    async for event in stream.events():
        await _store(event, mappings, EmployeeMapping)
