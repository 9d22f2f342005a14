"""Faust's producer buffer is drained fully before a flush returns (pipeline/app.py)."""

from __future__ import annotations

from faust.transport.producer import ProducerBuffer

import pipeline.app  # noqa: F401 - installs the drain


class SlowBuffer:
    """Each `flush_atmost` sends one message and returns, as Faust's own does once 0.1 s pass
    with no message leaving (a busy loop, a slow broker), the rest still in the buffer."""

    def __init__(self, pending: int) -> None:
        self.pending = pending

    @property
    def size(self) -> int:
        return self.pending

    async def flush_atmost(self, max_messages: int | None) -> int:
        self.pending -= 1
        return 1


async def test_a_flush_returns_only_with_the_buffer_empty() -> None:
    buffer = SlowBuffer(3)
    await ProducerBuffer.flush(buffer)  # type: ignore[arg-type]
    assert buffer.size == 0
