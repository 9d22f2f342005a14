"""handle_commands: operator commands by tenant; resume_replays: crash-cut and outage replays."""

from __future__ import annotations

import logging
from typing import Any

from pipeline.app import app, control_topic, is_steady, owns
from pipeline.runtime import desk, replays

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


@app.timer(interval=5.0)  # type: ignore[untyped-decorator]
async def resume_replays() -> None:
    if not is_steady():  # the tenant tables may be half recovered: the next tick
        return
    try:
        replays.resume(owns)
        await replays.replay_outages(owns)
    except Exception:
        log.exception("resuming replays failed; trying again on the next tick")
