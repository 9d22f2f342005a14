"""The worker's long-lived parts, wired to the app's topics and tables."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any, cast

from pipeline.app import (
    app,
    dead_letter_topic,
    integrations,
    invalid_topic,
    ledger_table,
    mappings,
    settings,
)
from pipeline.intake import TenantDirectory
from pipeline.lanes import LaneRegistry
from pipeline.ledger import TableLedger
from pipeline.outlets import Headers, TopicOutlets

__all__ = ["directory", "lanes", "outlets"]


async def _send_invalid(key: bytes | None, value: bytes, headers: Headers) -> object:
    return await invalid_topic.send(key=key, value=value, headers=headers)


async def _send_dead_letter(key: bytes | None, value: bytes, headers: Headers) -> object:
    return await dead_letter_topic.send(key=key, value=value, headers=headers)


async def _flush() -> None:
    await app.producer.flush()


outlets = TopicOutlets(send_invalid=_send_invalid, send_dead_letter=_send_dead_letter)
directory = TenantDirectory(integrations, mappings)
lanes = LaneRegistry(settings=settings.crm,
                     ledger=TableLedger(cast(MutableMapping[str, Any], ledger_table),
                                        flush=_flush),
                     outlets=outlets, buffer=settings.lane_buffer)


@app.on_before_shutdown.connect
async def _stop_lanes(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
    await lanes.stop()
