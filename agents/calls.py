"""deliver_calls: every call record, validated and handed to its tenant's delivery lane."""

from __future__ import annotations

from typing import Any

from pipeline.app import app, calls_topic
from pipeline.delivery import SourceRef
from pipeline.intake import accept_call
from pipeline.metrics import EVENTS_CONSUMED
from pipeline.runtime import directory, lanes, outlets


@app.agent(calls_topic)
async def deliver_calls(stream: Any) -> None:
    # Manual acks: an event is acked by its lane once its outcome is durable, so offsets are
    # committed only up to what is delivered, dead-lettered or on the invalid topic.
    async for event in stream.noack().events():
        message = event.message
        EVENTS_CONSUMED.labels(message.topic).inc()
        await accept_call(raw=event.value, key=event.key,
                          source=SourceRef(message.topic, message.partition, message.offset),
                          ack=event.ack, directory=directory, lanes=lanes, outlets=outlets)
