"""The worker's Faust app and its consumer: fetches that do not hold a partition's new records
back, and records handed to the agents without a task each."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Generator
from typing import Any, ClassVar

import faust
from aiokafka import AIOKafkaConsumer
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TransportT

__all__ = ["FAUST_FETCH_WAIT_MS", "App"]

# What faust-streaming 0.15.3's driver sets, with no setting to change it.
FAUST_FETCH_WAIT_MS = 1500


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """aiokafka has one fetch in flight per broker, and leaves out of it each partition whose
    fetched records were not all handed on yet; the broker holds that fetch up to its wait
    when the partitions in it have nothing new. Records arriving meanwhile on a partition left
    out wait for it: measured with pop-ups at 600/s, one gap of 0.9-1.5 s in most 5-second runs,
    1.6 s at the 99th percentile. With a short wait, at most that long."""

    def _create_worker_consumer(self, transport: Any) -> AIOKafkaConsumer:
        consumer: AIOKafkaConsumer = super()._create_worker_consumer(transport)
        wait_ms = getattr(consumer, "_fetch_max_wait_ms", None)
        if wait_ms != FAUST_FETCH_WAIT_MS:  # aiokafka or Faust changed under us: say so
            raise RuntimeError(f"expected Faust's fetch wait of {FAUST_FETCH_WAIT_MS} ms on "
                               f"aiokafka's consumer, found {wait_ms!r}")
        # Read by aiokafka when the consumer starts and builds its fetcher.
        consumer._fetch_max_wait_ms = self.app.fetch_wait_ms  # type: ignore[attr-defined]
        return consumer


class _Resumed:
    """A coroutine that ran up to its first suspension, awaitable from there to its end: what
    `await` would have done had it run in a task from the start."""

    def __init__(self, coro: Coroutine[Any, Any, Any], pending: Any) -> None:
        self._coro, self._pending = coro, pending

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, pending = self._coro, self._pending
        while True:
            try:
                sent = yield pending
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # noqa: BLE001 - a cancellation, passed on
                try:
                    pending = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    pending = coro.send(sent)
                except StopIteration as stop:
                    return stop.value


async def _finish(resumed: _Resumed) -> Any:
    return await resumed


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> _ConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _deliver(self, callback: Any, message: Any) -> None:
        """Faust awaits each record's delivery to its agents' streams in a task of its own, next
        to three more (the rebalance, stop and crash signals) and an `asyncio.wait`: 2.5 % of a
        worker's CPU, and two turns of the loop a record. Under load a turn took milliseconds
        and the agent's intake fell behind the lanes. A delivery that need not wait (the stream
        has room) now runs in place; one that must, waits as before, for the rebalance too."""
        coro = callback(message)
        if self.suspend_flow.is_set():
            await self.wait_first(coro, self.suspend_flow.wait())
            return
        try:
            pending = coro.send(None)
        except StopIteration:
            return
        await self.wait_first(_finish(_Resumed(coro, pending)), self.suspend_flow.wait())

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - the worker's
        """faust-streaming 0.15.3's loop (its `Consumer._drain_messages`), each record handed
        on by `_deliver`."""
        callback = self.callback
        getmany = self.getmany
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        set_flag, unset_flag = self.diag.set_flag, self.diag.unset_flag
        commit_every = self._commit_every
        acks_enabled_for = self.app.topics.acks_enabled_for
        yield_every, since_yield = 100, 0
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                set_flag(CONSUMER_FETCHING)
                records = getmany(timeout=1.0)
                await self.sleep(0)
                if not self.should_stop:
                    async for tp, message in records:
                        since_yield += 1
                        if since_yield > yield_every:
                            await asyncio.sleep(0)
                            since_yield = 0
                        offset = message.offset
                        r_offset = get_read_offset(tp)
                        if r_offset is None or offset >= r_offset:
                            gap = offset - (r_offset or 0)
                            if gap > 1 and r_offset and acks_enabled_for(message.topic):
                                await self._add_gap(tp, r_offset + 1, offset)
                            if commit_every is not None and self._n_acked >= commit_every:
                                self._n_acked = 0
                                await self.commit()
                            await self._deliver(callback, message)
                            set_read_offset(tp, offset)
                    unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            unset_flag(CONSUMER_FETCHING)


class _Transport(faust_aiokafka.Transport):
    Consumer: ClassVar[type[_Consumer]] = _Consumer


class App(faust.App):
    """`faust.App` whose consumer asks the brokers to answer a fetch within `fetch_wait_ms`."""

    def __init__(self, *args: Any, fetch_wait_ms: int, **kwargs: Any) -> None:
        self.fetch_wait_ms = fetch_wait_ms
        super().__init__(*args, **kwargs)

    def _new_transport(self) -> TransportT:
        return _Transport(self.conf.broker_consumer, self)
