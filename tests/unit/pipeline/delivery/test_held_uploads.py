"""Uploads held for a recording: until the plan's time, and never longer than the tenant's wait
after the lane got them (a record dated in the future held its partition's commits)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pipeline.delivery.helduploads import HeldUploads
from pipeline.delivery.planning import plan_call
from pipeline.delivery.work import SourceRef, Work
from tests.unit.pipeline.delivery.test_planning import MAPPING, config, event

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def work(**changes: Any) -> Work:
    bare = event(status="answered", recording_url=None, wait_seconds=5, talk_seconds=60,
                 **changes)
    plan = plan_call(bare, config(recording_wait_seconds=120), MAPPING)
    return Work(event=bare, plan=plan, raw=b"{}", key=None,
                source=SourceRef("calls", 0, 1), ack=lambda: None)


def test_an_upload_waits_for_its_recording_until_the_plans_time() -> None:
    held = HeldUploads()
    ended_now = work(started_at=(NOW - timedelta(seconds=65)).isoformat())
    assert held.hold([ended_now], NOW, stopped=False) == []
    assert held.until() == [NOW + timedelta(seconds=120)]
    assert held.due(NOW + timedelta(seconds=119), stopped=False) == []
    assert held.due(NOW + timedelta(seconds=120), stopped=False) == [ended_now]
    assert not held


def test_a_call_dated_in_the_future_waits_no_longer_than_the_tenants_wait() -> None:
    held = HeldUploads()
    future = work(started_at="2099-12-31T23:00:00+00:00")
    assert future.plan.hold_upload_until is not None
    assert future.plan.hold_upload_until.year == 2099
    assert held.hold([future], NOW, stopped=False) == []
    assert held.until() == [NOW + timedelta(seconds=120)]
    assert held.due(NOW + timedelta(seconds=120), stopped=False) == [future]


def test_a_later_record_of_the_call_keeps_the_first_ones_cap() -> None:
    held = HeldUploads()
    first = work(started_at="2099-12-31T23:00:00+00:00")
    held.hold([first], NOW, stopped=False)
    later = work(started_at="2099-12-31T23:00:00+00:00")
    assert held.hold([later], NOW + timedelta(seconds=100), stopped=False) == []
    assert held.until() == [NOW + timedelta(seconds=120)]  # not pushed on by the later one
    assert held.due(NOW + timedelta(seconds=120), stopped=False) == [later]
