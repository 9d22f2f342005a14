"""HomeRouter: which records go to their tenant's partition, and that they get there."""

from __future__ import annotations

import asyncio
import logging

import pytest
from aiokafka.partitioner import DefaultPartitioner
from prometheus_client import REGISTRY

from pipeline.delivery.routing import MAX_ROUTED_KEY, REROUTED_FROM, HomeRouter, Moved

PARTITIONS = 8
Sent = tuple[int, bytes, bytes, list[tuple[str, bytes]], float]


def murmur2(key: bytes) -> int:
    every = list(range(PARTITIONS))
    return int(DefaultPartitioner()(key, every, every))


def rerouted() -> float:
    return REGISTRY.get_sample_value("callsync_events_rerouted_total") or 0.0


class Topic:
    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.sent: list[Sent] = []

    async def send(self, partition: int, key: bytes, value: bytes,
                   headers: list[tuple[str, bytes]], stamp: float) -> None:
        if self.failures:
            self.failures -= 1
            raise OSError("broker away")
        self.sent.append((partition, key, value, headers, stamp))


def test_a_record_is_home_on_the_partition_a_java_producer_would_pick() -> None:
    router = HomeRouter(Topic().send, partitions=PARTITIONS, max_value=100)
    for tenant in (b"acme", b"globex", b"t-1", "магазин".encode()):
        home = murmur2(tenant)
        assert router.away(tenant, b"{}", home) is None
        assert router.away(tenant, b"{}", (home + 1) % PARTITIONS) == home


def test_records_intake_refuses_anyway_stay_where_they_are() -> None:
    router = HomeRouter(Topic().send, partitions=PARTITIONS, max_value=100)
    key = b"acme"
    wrong = (murmur2(key) + 1) % PARTITIONS
    assert router.away(None, b"{}", wrong) is None  # no key
    assert router.away(b"", b"{}", wrong) is None
    assert router.away(key, None, wrong) is None  # no value
    assert router.away(key, b"", wrong) is None
    assert router.away(key, b"x" * 101, wrong) is None  # too large: refused here
    assert router.away(key, b"x" * 100, wrong) == murmur2(key)
    assert router.away(b"\xff\xfe", b"{}", (murmur2(b"\xff\xfe") + 1) % PARTITIONS) is None
    long_key = b"a" * (MAX_ROUTED_KEY + 1)
    assert router.away(long_key, b"{}", (murmur2(long_key) + 1) % PARTITIONS) is None
    at_most = b"a" * MAX_ROUTED_KEY
    assert router.away(at_most, b"{}", (murmur2(at_most) + 1) % PARTITIONS) == murmur2(at_most)


async def test_the_copy_keeps_key_value_and_time_and_names_the_original() -> None:
    topic = Topic()
    router = HomeRouter(topic.send, partitions=PARTITIONS, max_value=100)
    before = rerouted()
    moved = await router.send_home(raw=b'{"a":1}', key=b"acme", home=3, where="calls/5/17",
                                   stamp=1700000000.5, live=lambda: True)
    assert moved is Moved.HOME
    assert topic.sent == [(3, b"acme", b'{"a":1}', [(REROUTED_FROM, b"calls/5/17")],
                           1700000000.5)]
    assert rerouted() == before + 1


async def test_a_failed_send_is_tried_again_until_it_is_stored() -> None:
    topic = Topic(failures=2)
    router = HomeRouter(topic.send, partitions=PARTITIONS, max_value=100, first_delay=0.001)
    assert await router.send_home(raw=b"{}", key=b"acme", home=1, where="calls/0/1", stamp=1.0,
                                  live=lambda: True) is Moved.HOME
    assert len(topic.sent) == 1 and topic.failures == 0


async def test_a_copy_that_cannot_be_stored_gives_up_so_the_record_is_handled_in_place(
        ) -> None:
    topic = Topic(failures=100)  # the worker may not write to the call topic, say
    router = HomeRouter(topic.send, partitions=PARTITIONS, max_value=100, first_delay=0.001,
                        tries=3)
    assert await router.send_home(raw=b"{}", key=b"acme", home=1, where="calls/0/1", stamp=1.0,
                                  live=lambda: True) is Moved.FAILED
    assert topic.sent == [] and topic.failures == 97


async def test_a_send_the_broker_never_acknowledges_is_given_up_too() -> None:
    async def hangs(*_: object) -> None:
        await asyncio.Event().wait()

    router = HomeRouter(hangs, partitions=PARTITIONS, max_value=100, first_delay=0.001,
                        tries=2, try_seconds=0.01)
    assert await router.send_home(raw=b"{}", key=b"acme", home=1, where="calls/0/1", stamp=1.0,
                                  live=lambda: True) is Moved.FAILED


async def test_a_partition_that_moved_on_stops_the_tries() -> None:
    topic = Topic(failures=100)
    router = HomeRouter(topic.send, partitions=PARTITIONS, max_value=100, first_delay=0.001,
                        tries=10)
    tries = iter(range(2))
    assert await router.send_home(raw=b"{}", key=b"acme", home=1, where="calls/0/1",
                                  stamp=1.0, live=lambda: next(tries, None) is not None
                                  ) is Moved.STOPPED
    assert topic.sent == [] and topic.failures == 98


async def test_the_log_says_it_once_a_minute_and_never_quotes_a_key_like_a_phone_number(
        caplog: pytest.LogCaptureFixture) -> None:
    now = [1000.0]
    router = HomeRouter(Topic().send, partitions=PARTITIONS, max_value=100,
                        clock=lambda: now[0])
    caplog.set_level(logging.WARNING, logger="pipeline.delivery.routing")

    async def move(key: bytes) -> None:
        assert await router.send_home(raw=b"{}", key=key, home=1, where="calls/0/1",
                                      stamp=1.0, live=lambda: True) is Moved.HOME

    await move(b"acme")
    for _ in range(5):
        await move(b"79161234567")
        now[0] += 10
    now[0] = 1060.0
    await move(b"79161234567")  # 60 s after the first line: the second
    await move(b"shop-7")  # counted in the next
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert "key 'acme'" in lines[0] and lines[0].startswith("1 call record(s)")
    assert lines[1].startswith("6 call record(s)") and "key of 11 bytes" in lines[1]
    assert "79161234567" not in " ".join(lines)
