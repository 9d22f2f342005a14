"""Faust's producer buffer is drained fully before a flush returns (pipeline/app.py)."""

from __future__ import annotations

import asyncio

from faust.transport.producer import ProducerBuffer

import pipeline.app  # noqa: F401 - installs the drain


class SlowBuffer:
    """Sends one message per 0.15 s: Faust's own flush would give up after 0.1 s."""

    def __init__(self, pending: int) -> None:
        self.pending = pending

    @property
    def size(self) -> int:
        return self.pending

    async def flush_atmost(self, max_messages: int | None) -> int:
        await asyncio.sleep(0.15)
        self.pending -= 1
        return 1


async def test_a_flush_returns_only_with_the_buffer_empty() -> None:
    buffer = SlowBuffer(3)
    await ProducerBuffer.flush(buffer)  # type: ignore[arg-type]
    assert buffer.size == 0
