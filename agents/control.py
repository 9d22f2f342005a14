"""handle_commands: operator commands by tenant; resume_replays: crash-cut and outage replays."""

from __future__ import annotations

import logging
from typing import Any

from pipeline.app import app, calls_topic, control_topic, settings
from pipeline.runtime import desk, replays
from pipeline.tables import tenant_partition

log = logging.getLogger(__name__)


@app.agent(control_topic)
async def handle_commands(stream: Any) -> None:
    async for event in stream.events():
        try:
            result = await desk.handle(event.value or b"", event.key)
        except Exception as exc:
            log.exception("command at %s[%s]@%s failed", event.message.topic,
                          event.message.partition, event.message.offset)
            await desk.failed(event.value or b"", exc)
            continue
        log.info("command %s (%s) for %s: %s %s", result.command_id, result.type,
                 result.tenant_id, result.status, result.message)


def _owns(tenant_id: str) -> bool:
    partition = tenant_partition(tenant_id, settings.topics.partitions)
    return any(tp.topic == calls_topic.get_topic_name() and tp.partition == partition
               for tp in app.assignor.assigned_actives())


@app.timer(interval=5.0)  # type: ignore[untyped-decorator]
async def resume_replays() -> None:
    try:
        replays.resume(_owns)
        await replays.replay_outages(_owns)
    except Exception:
        log.exception("resuming replays failed; trying again on the next tick")
