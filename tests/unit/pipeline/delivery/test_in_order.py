"""InOrder: a partition's records reach their lanes in offset order across holes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from pipeline.streams.holes import InOrder
from pipeline.streams.offsets import OffsetGate

T = "callsync.calls"
KEY = (T, 0)


def recorder(handed: list[int], offset: int) -> Callable[[], Awaitable[None]]:
    async def hand() -> None:
        handed.append(offset)
    return hand


async def test_records_above_a_hole_wait_for_its_record_then_go_in_offset_order() -> None:
    """The fault suite's kill (CI): the first record after a restart was skipped by Faust, read
    apart 160 ms later, and the caller's second call, handed on first, made the lead."""
    gate, handed = OffsetGate(), list[int]()
    order = InOrder(gate)
    gate.read(T, 0, 12, generation=1, stamp=0.0)
    gate.set_base(KEY, 1, 12)
    await order.admit(KEY, 12, recorder(handed, 12))
    for offset in (14, 15):  # 13 was not handed out: a hole
        gate.read(T, 0, offset, generation=1, stamp=0.0)
        await order.admit(KEY, offset, recorder(handed, offset))
    assert handed == [12] and order.waiting(KEY) == 2
    assert gate.fill(KEY, 1, 13, 0.0) is not None  # the filler reads it
    await order.admit(KEY, 13, recorder(handed, 13))
    assert handed == [12, 13, 14, 15] and order.waiting(KEY) == 0


async def test_records_wait_while_the_generation_s_start_is_looked_up() -> None:
    gate, handed = OffsetGate(), list[int]()
    order = InOrder(gate)
    for offset in (7, 8):
        gate.read(T, 0, offset, generation=1, stamp=0.0)
        await order.admit(KEY, offset, recorder(handed, offset))
    assert handed == []
    gate.set_base(KEY, 1, 5)  # 5 and 6 are a hole
    await order.release_all()
    assert handed == []
    for offset in (5, 6):
        assert gate.fill(KEY, 1, offset, 0.0) is not None
        await order.admit(KEY, offset, recorder(handed, offset))
    assert handed == [5, 6, 7, 8]


async def test_a_hole_found_empty_lets_the_records_above_go() -> None:
    gate, handed = OffsetGate(), list[int]()
    order = InOrder(gate)
    for offset in (0, 2):
        gate.read(T, 0, offset, generation=1, stamp=0.0)
        if offset == 0:
            gate.set_base(KEY, 1, 0)
        await order.admit(KEY, offset, recorder(handed, offset))
    assert handed == [0]
    gate.passed(KEY, 1, 1, 2)  # a transaction marker
    await order.release_all()
    assert handed == [0, 2]


async def test_a_revoked_partition_lets_its_waiting_records_go_to_be_dropped() -> None:
    gate, handed = OffsetGate(), list[int]()
    order = InOrder(gate)
    gate.read(T, 0, 3, generation=1, stamp=0.0)
    await order.admit(KEY, 3, recorder(handed, 3))
    assert handed == []
    gate.revoke([KEY])
    await order.release_all()
    assert handed == [3] and order.waiting(KEY) == 0  # its lease is no longer live


async def test_too_many_waiting_records_hold_the_agent_back_until_released() -> None:
    gate, handed = OffsetGate(), list[int]()
    order = InOrder(gate, max_waiting=2)
    for offset in (1, 2):
        gate.read(T, 0, offset, generation=1, stamp=0.0)
        await order.admit(KEY, offset, recorder(handed, offset))
    gate.read(T, 0, 3, generation=1, stamp=0.0)
    third = asyncio.create_task(order.admit(KEY, 3, recorder(handed, 3)))
    await asyncio.sleep(0)
    assert not third.done() and order.waiting(KEY) == 2
    gate.set_base(KEY, 1, 1)
    await order.release_all()
    await asyncio.wait_for(third, 5)
    assert handed == [1, 2, 3]
