"""Call records onto the call topic, answered only once the brokers acknowledged every one.

    PublishRefused (retry_after: seconds)
    ├── Busy         as many records in flight as allowed: nothing was sent (429)
    └── Unavailable  not connected, a send failed or was not acknowledged in time (503); some
                     records may still be stored: sending them again is harmless (the worker
                     takes a call's same record twice as one)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from pipeline.config import Settings
from pipeline.observability.metrics import INGEST_IN_FLIGHT
from pipeline.streams.producing import Record

__all__ = ["Busy", "CallPublisher", "ProducerLike", "PublishRefused", "Unavailable",
           "kafka_publisher"]

log = logging.getLogger(__name__)
UNAVAILABLE_FACTOR = 5  # a 503 asks for a longer pause than a 429
RECONNECT_MAX_SECONDS = 30.0
PROBE_SECONDS = 3.0


class PublishRefused(Exception):
    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Busy(PublishRefused):
    pass


class Unavailable(PublishRefused):
    pass


class ProducerLike(Protocol):
    """The part of AIOKafkaProducer used here (unit tests pass a fake)."""

    client: Any

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def send(self, topic: str, value: bytes | None = None, key: bytes | None = None,
                   partition: int | None = None, timestamp_ms: int | None = None,
                   headers: Any = None) -> asyncio.Future[Any]: ...


class CallPublisher:
    """One producer for the process, connected in the background (and again until it works);
    bounds the records in flight. `send_timeout` is per request."""

    def __init__(self, *, producer_factory: Callable[[], ProducerLike], topic: str,
                 max_in_flight: int, send_timeout: float, retry_after: int,
                 reconnect_seconds: float = 1.0) -> None:
        self.producer_factory = producer_factory
        self.topic = topic
        self.max_in_flight = max_in_flight
        self.send_timeout = send_timeout
        self.retry_after = retry_after
        self.reconnect_seconds = reconnect_seconds
        self.in_flight = 0
        self._producer: ProducerLike | None = None
        self._connecting: asyncio.Task[None] | None = None

    @property
    def started(self) -> bool:
        return self._producer is not None

    async def start(self) -> None:
        """Return at once; the producer connects in the background."""
        if self._connecting is None:
            self._connecting = asyncio.create_task(self._connect(), name="ingest-producer")

    async def _connect(self) -> None:
        delay = self.reconnect_seconds
        while True:
            producer = self.producer_factory()
            try:
                await producer.start()
            except (KafkaError, OSError, TimeoutError) as exc:
                log.warning("cannot reach the brokers (%s); trying again in %.0f s",
                            type(exc).__name__, delay)
                with contextlib.suppress(KafkaError, OSError, TimeoutError):
                    await producer.stop()
                await asyncio.sleep(delay)
                delay = min(RECONNECT_MAX_SECONDS, delay * 2)
                continue
            self._producer = producer
            log.info("producer connected; publishing to %s", self.topic)
            return

    async def stop(self) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connecting
            self._connecting = None
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()  # flushes what is in flight

    async def ready(self) -> tuple[bool, str]:
        """Connected, and the brokers answer a metadata request that knows the call topic."""
        producer = self._producer
        if producer is None:
            return False, "not connected to the brokers"
        try:
            metadata = await asyncio.wait_for(producer.client.fetch_all_metadata(),
                                              PROBE_SECONDS)
        except (KafkaError, OSError, TimeoutError) as exc:
            return False, f"the brokers do not answer ({type(exc).__name__})"
        if self.topic not in metadata.topics():
            return False, f"the brokers do not know the topic {self.topic}"
        return True, "ok"

    def _settled(self, _: object = None) -> None:
        self.in_flight -= 1
        INGEST_IN_FLIGHT.set(self.in_flight)

    async def publish(self, records: Sequence[Record]) -> None:
        """Send every record and return once each is acknowledged; else raise PublishRefused."""
        producer = self._producer
        if producer is None:
            raise Unavailable("not connected to the brokers yet",
                              retry_after=self.retry_after * UNAVAILABLE_FACTOR)
        if self.in_flight + len(records) > self.max_in_flight:
            raise Busy(f"{self.in_flight} records are awaiting the brokers (at most "
                       f"{self.max_in_flight})", retry_after=self.retry_after)
        # A slot is freed when its record is settled, not when this request gives up on it:
        # a record still in the producer's buffer is still in flight.
        self.in_flight += len(records)
        INGEST_IN_FLIGHT.set(self.in_flight)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.send_timeout
        futures: list[asyncio.Future[Any]] = []
        try:
            for key, value, timestamp in records:
                future = await asyncio.wait_for(
                    producer.send(self.topic, value, key=key, timestamp_ms=timestamp),
                    max(0.0, deadline - loop.time()))
                future.add_done_callback(self._settled)
                futures.append(future)
            # asyncio.wait never cancels them: the producer settles each in its own time.
            done, pending = await asyncio.wait(futures, timeout=max(0.0, deadline - loop.time()))
        except (KafkaError, OSError, TimeoutError) as exc:
            raise self._unavailable(f"a send failed ({type(exc).__name__})") from None
        finally:
            for _ in range(len(records) - len(futures)):  # never handed to the producer
                self._settled()
        if pending:
            raise self._unavailable(f"{len(pending)} of {len(records)} records not "
                                    f"acknowledged within {self.send_timeout:g} s")
        failed = [f for f in done if f.cancelled() or f.exception() is not None]
        if failed:
            why = "cancelled" if failed[0].cancelled() else type(failed[0].exception()).__name__
            raise self._unavailable(f"{len(failed)} of {len(records)} records refused by the "
                                    f"brokers ({why})")

    def _unavailable(self, why: str) -> Unavailable:
        log.warning("publishing to %s: %s", self.topic, why)
        return Unavailable(why, retry_after=self.retry_after * UNAVAILABLE_FACTOR)


def kafka_publisher(settings: Settings) -> CallPublisher:
    """The ingest's publisher: acks from all in-sync replicas, idempotent, and a record the
    brokers could not take within the send timeout expires in the producer too."""
    options, kafka = settings.ingest, settings.kafka.client_options()

    def producer() -> ProducerLike:
        made: ProducerLike = AIOKafkaProducer(
            **kafka, acks="all", enable_idempotence=True, linger_ms=5,
            request_timeout_ms=int(options.send_timeout_seconds * 1000))
        return made

    return CallPublisher(producer_factory=producer, topic=settings.topics.calls,
                         max_in_flight=options.max_in_flight,
                         send_timeout=options.send_timeout_seconds,
                         retry_after=options.retry_after_seconds)
