"""A lane's announcements: several calls' at once, each call's and each user's in order."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import cast

from pipeline.delivery.announcer import MAX_ANNOUNCING, Announcer
from pipeline.delivery.work import Work


@dataclass
class _Change:
    user_id: int


@dataclass
class _Plan:
    call_id: str
    status_change: _Change | None = None


@dataclass
class _Work:
    plan: _Plan
    announced: bool = False


def work(call_id: str, user_id: int | None = None) -> Work:
    change = _Change(user_id) if user_id is not None else None
    return cast(Work, _Work(_Plan(call_id, change)))


@dataclass
class Gated:
    """An announce step that waits for its work to be let through; what ran, in order."""

    log: list[str] = field(default_factory=list)
    gates: dict[str, asyncio.Event] = field(default_factory=dict)
    cancelled: list[str] = field(default_factory=list)

    def gate(self, name: str) -> asyncio.Event:
        return self.gates.setdefault(name, asyncio.Event())

    async def __call__(self, w: Work) -> None:
        self.log.append(w.plan.call_id)
        try:
            await self.gate(w.plan.call_id).wait()
        except asyncio.CancelledError:
            self.cancelled.append(w.plan.call_id)
            raise


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_different_calls_are_announced_at_once_and_marked_when_over() -> None:
    step = Gated()
    announcer = Announcer(step)
    works = [work(f"c{n}") for n in range(3)]
    for w in works:
        await announcer.start(w)
    await settle()
    assert step.log == ["c0", "c1", "c2"], "all three under way, none waiting for another"
    assert announcer.busy and not any(w.announced for w in works)
    step.gate("c1").set()
    await settle()
    assert [w.announced for w in works] == [False, True, False]
    for name in ("c0", "c2"):
        step.gate(name).set()
    await announcer.settled(works)
    assert all(w.announced for w in works) and not announcer.busy


async def test_a_call_s_stages_and_a_user_s_statuses_stay_in_order() -> None:
    step = Gated()
    announcer = Announcer(step)
    ringing, answered = work("c1"), work("c1")
    busy, other_call_same_user = work("c2", user_id=7), work("c3", user_id=7)
    for w in (ringing, answered, busy, other_call_same_user):
        await announcer.start(w)
    await settle()
    assert step.log == ["c1", "c2"], "c1's second stage and user 7's second status wait"
    step.gate("c1").set()
    step.gate("c2").set()
    await announcer.settled([ringing, busy])
    await settle()
    assert step.log == ["c1", "c2", "c1", "c3"]
    step.gate("c3").set()
    await announcer.settled([answered, other_call_same_user])
    assert not announcer.busy


async def test_starting_one_more_than_the_limit_waits_for_room() -> None:
    step = Gated()
    announcer = Announcer(step)
    works = [work(f"c{n}") for n in range(MAX_ANNOUNCING + 1)]
    for w in works[:-1]:
        await announcer.start(w)
    extra = asyncio.create_task(announcer.start(works[-1]))
    await settle()
    assert not extra.done() and len(step.log) == MAX_ANNOUNCING
    step.gate("c0").set()
    await asyncio.wait_for(extra, 10)
    await settle()
    assert step.log[-1] == f"c{MAX_ANNOUNCING}"
    for w in works:
        step.gate(w.plan.call_id).set()
    await announcer.settled(works)


async def test_a_failed_announcement_lets_the_next_stage_of_its_call_go() -> None:
    ran: list[str] = []

    async def step(w: Work) -> None:
        ran.append(w.plan.call_id)
        if len(ran) == 1:
            raise RuntimeError("a bug in the step")  # the lane's _step catches these

    announcer = Announcer(step)
    first, second = work("c1"), work("c1")
    await announcer.start(first)
    await announcer.start(second)
    await announcer.settled([first, second])
    assert ran == ["c1", "c1"] and first.announced and second.announced


async def test_stopping_cancels_what_is_under_way() -> None:
    step = Gated()
    announcer = Announcer(step)
    w = work("c1")
    await announcer.start(w)
    await settle()
    await announcer.cancel()
    assert step.cancelled == ["c1"] and not announcer.busy
