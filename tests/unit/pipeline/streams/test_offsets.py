"""The call topic's commit points: only over settled events, whatever order they settle in."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from types import SimpleNamespace
from typing import Any

from faust.transport.consumer import Consumer
from faust.types import TP
from intervaltree import IntervalTree

from pipeline.streams.committer import Committer
from pipeline.streams.offsets import OffsetGate
from tests.waiting import wait_until

T = "callsync.calls"


def faust_new_offset(acked: list[int], committed: int | None) -> int | None:
    """faust-streaming 0.15.3's own rule, run on a stand-in consumer."""
    tp = TP(T, 0)
    fake: Any = SimpleNamespace(_acked=defaultdict(list, {tp: list(acked)}),
                                _gap=defaultdict(IntervalTree),
                                _acked_index=defaultdict(set, {tp: set(acked)}),
                                _committed_offset=defaultdict(lambda: None, {tp: committed}))
    result: int | None = Consumer._new_offset(fake, tp)
    return result


def read(gate: OffsetGate, *offsets: int, generation: int = 1) -> list[Any]:
    """Read these offsets; a generation that begins here began at its committed offset (the
    hole filler looks that up: see `based`)."""
    leases = [gate.read(T, 0, o, generation=generation, stamp=1000.0 + o) for o in offsets]
    for key, gen in gate.unbased():
        gate.set_base(key, gen, offsets[0])
    return leases


def test_faust_commits_past_an_unsettled_head_and_the_gate_does_not() -> None:
    # Offsets 10..14 were read after a commit at 10; 10 is still in flight, 11..14 settled.
    assert faust_new_offset([11, 12, 13, 14], committed=10) == 15  # upstream #606: 10 is lost
    gate = OffsetGate()
    leases = read(gate, 10, 11, 12, 13, 14)
    for lease in leases[1:]:
        lease.settle()
    assert gate.commit_points() == {(T, 0): 10}  # not past 10
    leases[0].settle()
    assert gate.commit_points() == {(T, 0): 15}


def test_a_committed_offset_of_zero_is_not_skipped() -> None:
    # Faust skips its head check entirely while the committed offset is 0 or None.
    assert faust_new_offset([1, 2, 3], committed=0) == 4
    assert faust_new_offset([1, 2, 3], committed=None) == 4
    gate = OffsetGate()
    leases = read(gate, 0, 1, 2, 3)
    for lease in leases[1:]:
        lease.settle()
    assert gate.commit_points() == {(T, 0): 0}
    leases[0].settle()
    assert gate.commit_points() == {(T, 0): 4}


def test_the_point_stops_at_the_first_unsettled_offset_in_between() -> None:
    gate = OffsetGate()
    leases = read(gate, 5, 6, 7, 8)
    leases[0].settle()
    leases[2].settle()
    leases[3].settle()
    assert gate.commit_points() == {(T, 0): 6}
    gate.committed({(T, 0): 6})
    assert gate.commit_points() == {}  # nothing moved since
    leases[1].settle()
    assert gate.commit_points() == {(T, 0): 9}


def test_a_new_generation_makes_the_old_leases_dead_and_harmless() -> None:
    gate = OffsetGate()
    old = read(gate, 0, 1, 2, generation=1)
    old[0].settle()
    new = read(gate, 1, 2, generation=2)  # the next owner reads again from the commit point
    assert not old[1].live and not old[2].live and new[0].live
    old[1].settle()
    old[2].settle()
    assert gate.commit_points() == {(T, 0): 1}  # the old settles did not move the new point
    stale = gate.read(T, 0, 3, generation=1, stamp=0.0)  # fetched before the rebalance
    assert not stale.live and not stale.start()
    assert gate.commit_points() == {(T, 0): 1}


def test_a_record_read_twice_in_one_generation_is_a_duplicate_that_moves_nothing() -> None:
    """Faust hands the last record of a partition out twice after a restart or a rebalance.
    Taking the repeat for a seek back once dropped every queued work before it (lost below the
    commit point): the first reads stay live and pending, the repeat counts for nothing."""
    gate = OffsetGate()
    first = read(gate, 46, 47, 48)
    again = read(gate, 48)
    assert all(lease.live for lease in first) and not again[0].live
    first[2].settle()
    assert gate.commit_points() == {(T, 0): 46}, "46 and 47 are still pending"
    again[0].settle()
    assert gate.commit_points() == {(T, 0): 46}
    first[0].settle()
    first[1].settle()
    assert gate.commit_points() == {(T, 0): 49}
    later = read(gate, 49)
    assert later[0].live and gate.commit_points() == {(T, 0): 49}


def test_revoked_partitions_start_no_new_work() -> None:
    gate = OffsetGate()
    lease = read(gate, 0)[0]
    gate.revoke([(T, 0)])
    assert not lease.start()
    late = gate.read(T, 0, 1, generation=1, stamp=0.0)
    assert not late.live


def test_lag_is_records_past_the_point_and_seconds_since_the_oldest_unsettled() -> None:
    gate = OffsetGate()
    leases = read(gate, 0, 1, 2)  # stamped 1000, 1001, 1002 (seconds)
    leases[1].settle()
    assert gate.lag(T, 0, highwater=10, now=1030.0) == (10, 30.0)
    leases[0].settle()
    leases[2].settle()
    assert gate.lag(T, 0, highwater=10, now=1030.0) == (7, 0.0)
    assert gate.lag(T, 9, highwater=10, now=1030.0) == (0, 0.0)  # not ours


async def test_the_committer_flushes_before_it_commits_and_commits_only_what_moved() -> None:
    gate = OffsetGate()
    calls: list[str] = []

    async def flush() -> None:
        calls.append("flush")

    async def commit(points: dict[tuple[str, int], int]) -> bool:
        calls.append(f"commit {points}")
        return True

    committer = Committer(gate, flush=flush, commit=commit)
    leases = read(gate, 0, 1)
    leases[1].settle()
    assert await committer.commit() == {(T, 0): 0}
    assert await committer.commit() == {}
    leases[0].settle()
    assert await committer.commit() == {(T, 0): 2}
    assert calls == ["flush", "commit {('callsync.calls', 0): 0}",
                     "flush", "commit {('callsync.calls', 0): 2}"]


async def test_release_waits_for_running_work_then_commits_and_forgets() -> None:
    gate = OffsetGate()
    committed: list[dict[tuple[str, int], int]] = []

    async def flush() -> None:
        return None

    async def commit(points: dict[tuple[str, int], int]) -> bool:
        committed.append(points)
        return True

    committer = Committer(gate, flush=flush, commit=commit)
    running, queued = read(gate, 0, 1)
    assert running.start()
    release = asyncio.create_task(committer.release([(T, 0)], wait=5.0))
    await wait_until(lambda: not queued.live, "the release to revoke the partition")
    await asyncio.sleep(0)  # one more turn: it waits now, if it waits at all
    assert not release.done() and committed == [], "it waits for the work under way"
    running.settle()
    assert await asyncio.wait_for(release, 5) == {(T, 0): 1}
    assert committed == [{(T, 0): 1}]
    assert not queued.start()  # its next owner reads it again
    assert gate.partitions(T) == []


async def test_release_gives_up_waiting_after_its_bound() -> None:
    gate = OffsetGate()

    async def flush() -> None:
        return None

    async def commit(points: dict[tuple[str, int], int]) -> bool:
        return True

    stuck = read(gate, 4)[0]
    assert stuck.start()
    committer = Committer(gate, flush=flush, commit=commit)
    assert await committer.release([(T, 0)], wait=0.05) == {(T, 0): 4}


def test_no_commit_point_before_the_generation_s_start_is_known() -> None:
    gate = OffsetGate()
    lease = gate.read(T, 0, 7, generation=1, stamp=0.0)
    lease.settle()
    assert gate.commit_points() == {} and gate.unbased() == [((T, 0), 1)]
    gate.set_base((T, 0), 1, 7)
    assert gate.commit_points() == {(T, 0): 8}


def test_a_generation_handed_records_above_its_committed_offset_waits_for_the_ones_below() -> None:
    """The fault suite's broker-kill: Faust's first records of a generation began at 341 with
    the group committed at 327; 327..340 were never handed out and were committed over."""
    gate = OffsetGate()
    leases = [gate.read(T, 0, o, generation=2, stamp=0.0) for o in (341, 342)]
    gate.set_base((T, 0), 2, 327)
    for first in leases:
        first.settle()
    assert gate.commit_points() == {(T, 0): 327}
    assert gate.holes() == [((T, 0), 2, 327, 341)]
    filled = [gate.fill((T, 0), 2, o, 0.0) for o in range(327, 335)]
    assert all(lease is not None and lease.live for lease in filled)
    assert gate.fill((T, 0), 2, 327, 0.0) is None, "taken already"
    gate.passed((T, 0), 2, 327, 341)  # 335..340 held no record (say, markers)
    assert gate.holes() == [] and gate.commit_points() == {(T, 0): 327}
    for taken in filled:
        assert taken is not None
        taken.settle()
    assert gate.commit_points() == {(T, 0): 343}


def test_an_offset_skipped_within_a_generation_holds_the_point_until_it_is_read() -> None:
    gate = OffsetGate()
    leases = read(gate, 155, 156, 158, 159)  # 157 was dropped by Faust
    for lease in leases:
        lease.settle()
    assert gate.commit_points() == {(T, 0): 157}
    assert gate.holes() == [((T, 0), 1, 157, 158)]
    late = gate.read(T, 0, 157, generation=1, stamp=0.0)  # Faust hands it out after all
    assert late.live and gate.holes() == []
    assert gate.fill((T, 0), 1, 157, 0.0) is None  # the filler then leaves it
    late.settle()
    assert gate.commit_points() == {(T, 0): 160}


def test_a_record_the_filler_read_first_is_a_duplicate_when_faust_hands_it_out() -> None:
    gate = OffsetGate()
    read(gate, 10, 12)
    filled = gate.fill((T, 0), 1, 11, 0.0)
    assert filled is not None and filled.live
    assert not gate.read(T, 0, 11, generation=1, stamp=0.0).live


def test_a_partition_whose_log_goes_on_without_reads_gets_a_hole_once_idle() -> None:
    """Records at a partition's tail that Faust never handed out, with nothing after them to
    show the gap, are found by the log's end: the rebalance that delivered nothing."""
    gate = OffsetGate()
    gate.watch((T, 0), 3, 50, idle=10.0, now=0.0)  # assigned, nothing read yet
    assert gate.unbased() == [((T, 0), 3)] and gate.holes() == []
    gate.set_base((T, 0), 3, 20)
    gate.watch((T, 0), 3, 50, idle=10.0, now=time.monotonic())
    assert gate.holes() == [], "not idle long enough"
    gate.watch((T, 0), 3, 50, idle=10.0, now=time.monotonic() + 11)
    assert gate.holes() == [((T, 0), 3, 20, 50)]
    assert gate.commit_points() == {(T, 0): 20}


def test_a_pending_partition_is_not_watched() -> None:
    gate = OffsetGate()
    read(gate, 0)
    gate.watch((T, 0), 1, 50, idle=0.0, now=time.monotonic() + 100)
    assert gate.holes() == []


def test_only_a_quiet_partition_s_log_end_is_worth_asking_for() -> None:
    """The hole filler asks the brokers for the log's end of these only (not every assigned
    partition every second)."""
    gate = OffsetGate()
    later = time.monotonic() + 100
    assert gate.quiet((T, 0), 1, idle=10.0, now=later), "not begun: the watch begins it"
    [lease] = read(gate, 0)
    assert not gate.quiet((T, 0), 1, idle=10.0, now=later), "a record pending"
    lease.settle()
    assert not gate.quiet((T, 0), 1, idle=10.0, now=time.monotonic()), "read just now"
    assert gate.quiet((T, 0), 1, idle=10.0, now=later)
    assert gate.quiet((T, 0), 2, idle=10.0, now=later), "a new generation: begun anew"
    gate.watch((T, 0), 1, 50, idle=10.0, now=later)
    assert gate.holes() == [((T, 0), 1, 1, 50)]
    assert not gate.quiet((T, 0), 1, idle=10.0, now=later), "a hole open: the filler reads it"


def test_holes_of_a_partition_moved_away_are_not_read() -> None:
    gate = OffsetGate()
    read(gate, 0, 5)
    gate.revoke([(T, 0)])
    assert gate.holes() == [] and gate.fill((T, 0), 1, 2, 0.0) is None
