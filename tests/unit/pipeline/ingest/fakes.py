"""A fake AIOKafkaProducer for the ingest: acknowledges, fails or holds each record."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError

__all__ = ["FakeProducer"]

Mode = Literal["ack", "fail", "hold", "raise"]


class _Metadata:
    def __init__(self, topics: set[str]) -> None:
        self._topics = topics

    def topics(self) -> set[str]:
        return self._topics


class _Client:
    def __init__(self, producer: FakeProducer) -> None:
        self.producer = producer

    async def fetch_all_metadata(self) -> _Metadata:
        if self.producer.unreachable:
            raise KafkaConnectionError("no broker")
        return _Metadata(self.producer.topics)


class FakeProducer:
    """`stored` holds what a broker acknowledged: (topic, key, value, timestamp_ms).
    `modes` is consumed one per send (then `mode`): a record may be acknowledged, refused
    (its future fails), held until `release()`, or refused by send() itself."""

    def __init__(self, *, topics: set[str], start_failures: int = 0) -> None:
        self.topics = topics
        self.start_failures = start_failures
        self.starts = 0
        self.stopped = False
        self.unreachable = False
        self.mode: Mode = "ack"
        self.modes: list[Mode] = []
        self.stored: list[tuple[str, bytes | None, bytes | None, int | None]] = []
        self.held: list[tuple[asyncio.Future[Any], tuple[str, Any, Any, Any]]] = []
        self.client = _Client(self)

    async def start(self) -> None:
        self.starts += 1
        if self.starts <= self.start_failures:
            raise KafkaConnectionError("Unable to bootstrap from [('127.0.0.1', 1)]")

    async def stop(self) -> None:
        self.stopped = True

    async def send(self, topic: str, value: bytes | None = None, key: bytes | None = None,
                   partition: int | None = None, timestamp_ms: int | None = None,
                   headers: Any = None) -> asyncio.Future[Any]:
        mode = self.modes.pop(0) if self.modes else self.mode
        if mode == "raise":
            raise KafkaTimeoutError("the accumulator is full")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        record = (topic, key, value, timestamp_ms)
        if mode == "ack":
            self.stored.append(record)
            future.set_result(len(self.stored) - 1)
        elif mode == "fail":
            future.set_exception(KafkaTimeoutError("batch expired"))
        else:
            self.held.append((future, record))
        return future

    def release(self, *, fail: bool = False) -> int:
        """Settle every held record: acknowledged (stored) or failed."""
        held, self.held = self.held, []
        for future, record in held:
            if fail:
                future.set_exception(KafkaConnectionError("broker gone"))
            else:
                self.stored.append(record)
                future.set_result(len(self.stored) - 1)
        return len(held)
