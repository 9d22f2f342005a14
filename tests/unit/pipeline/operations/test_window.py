"""The three-calendar-day replay window, its boundaries and daylight-saving changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from pipeline.operations.window import ReplayWindow, calendar_days_window

KYIV = ZoneInfo("Europe/Kyiv")


def test_wednesday_afternoon_reaches_back_to_monday_midnight() -> None:
    now = datetime(2026, 11, 25, 15, 0, tzinfo=KYIV)  # a Wednesday
    window = calendar_days_window(now, KYIV)
    assert window.start == datetime(2026, 11, 23, 0, 0, tzinfo=KYIV)
    assert window.start.astimezone(KYIV).strftime("%A %H:%M") == "Monday 00:00"
    assert window.contains(now) and not window.contains(now + timedelta(seconds=1))
    assert window.contains(window.start)
    assert not window.contains(window.start - timedelta(microseconds=1))


@pytest.mark.parametrize(("days_ago", "inside"), [(4, False), (3, False), (2, True),
                                                  (1, True), (0, True)])
def test_events_stamped_days_ago(days_ago: int, inside: bool) -> None:
    now = datetime(2026, 11, 25, 0, 30, tzinfo=KYIV)  # just after midnight: the hard case
    moment = now - timedelta(days=days_ago)
    assert calendar_days_window(now, KYIV).contains(moment) is inside


def test_across_the_autumn_change_two_days_span_49_hours() -> None:
    # Kyiv leaves summer time on 2026-10-25 at 04:00 local: that Sunday has 25 hours.
    now = datetime(2026, 10, 26, 0, 0, tzinfo=KYIV)
    window = calendar_days_window(now, KYIV)
    assert window.start == datetime(2026, 10, 24, 0, 0, tzinfo=KYIV)
    assert window.start.astimezone(KYIV).utcoffset() == timedelta(hours=3)  # summer time
    assert (window.end - window.start) - timedelta(microseconds=1) == timedelta(hours=49)
    late_saturday = datetime(2026, 10, 24, 0, 0, tzinfo=KYIV) - timedelta(minutes=1)
    assert not window.contains(late_saturday)


def test_across_the_spring_change() -> None:
    # Kyiv enters summer time on 2026-03-29 at 03:00 local: that Sunday has 23 hours.
    now = datetime(2026, 3, 30, 12, 0, tzinfo=KYIV)
    window = calendar_days_window(now, KYIV)
    assert window.start == datetime(2026, 3, 28, 0, 0, tzinfo=KYIV)
    assert window.start.astimezone(KYIV).utcoffset() == timedelta(hours=2)  # winter time
    assert window.end.astimezone(KYIV) - timedelta(microseconds=1) == now


def test_a_midnight_that_does_not_exist_starts_the_day_at_its_first_instant() -> None:
    # Chile (America/Santiago) moved clocks forward at 00:00 on 2024-09-08.
    santiago = ZoneInfo("America/Santiago")
    now = datetime(2024, 9, 10, 9, 0, tzinfo=santiago)
    window = calendar_days_window(now, santiago)
    assert window.start.astimezone(santiago).date().isoformat() == "2024-09-08"
    assert window.start.astimezone(santiago).hour == 1
    assert not window.contains(datetime(2024, 9, 7, 23, 59, tzinfo=santiago))


def test_the_same_instant_gives_different_windows_in_different_zones() -> None:
    now = datetime(2026, 11, 25, 22, 30, tzinfo=UTC)  # already Thursday in Kyiv
    assert calendar_days_window(now, KYIV).start.astimezone(KYIV).day == 24
    assert calendar_days_window(now, ZoneInfo("America/New_York")).start.astimezone(
        ZoneInfo("America/New_York")).day == 23


def test_windows_round_trip_and_refuse_nonsense() -> None:
    window = calendar_days_window(datetime(2026, 11, 25, 15, 0, tzinfo=KYIV), KYIV)
    assert ReplayWindow.from_dict(window.as_dict()) == window
    with pytest.raises(ValueError, match="aware"):
        calendar_days_window(datetime(2026, 11, 25), KYIV)
    with pytest.raises(ValueError, match="start before"):
        ReplayWindow(window.end, window.start)
