"""deliver_calls: every call record, validated and handed to its tenant's delivery lane."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pipeline.app import app, calls_topic
from pipeline.delivery import SourceRef
from pipeline.intake import accept_call
from pipeline.metrics import EVENTS_CONSUMED
from pipeline.runtime import directory, lag, lanes, outlets


@app.agent(calls_topic)
async def deliver_calls(stream: Any) -> None:
    # Manual acks: an event is acked by its lane once its outcome is durable, so offsets are
    # committed only up to what is delivered, dead-lettered or on the invalid topic.
    async for event in stream.noack().events():
        message = event.message
        EVENTS_CONSUMED.labels(message.topic).inc()
        lag.consumed(message.topic, message.partition, message.offset, message.timestamp)
        await accept_call(raw=event.value, key=event.key,
                          source=SourceRef(message.topic, message.partition, message.offset),
                          ack=_settle(event), directory=directory, lanes=lanes,
                          outlets=outlets)


def _settle(event: Any) -> Callable[[], None]:
    message = event.message

    def ack() -> None:
        lag.settled(message.topic, message.partition, message.offset)
        event.ack()

    return ack


@app.timer(interval=5.0)  # type: ignore[untyped-decorator]
async def publish_lag() -> None:
    topic = calls_topic.get_topic_name()
    assigned = [tp for tp in app.assignor.assigned_actives() if tp.topic == topic]
    lag.publish(topic, [(tp.partition, app.consumer.highwater(tp)) for tp in assigned])
