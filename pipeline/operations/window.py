"""The replay window: today and the two calendar days before, in the tenant's time zone."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

__all__ = ["ReplayWindow", "calendar_days_window"]


@dataclass(frozen=True)
class ReplayWindow:
    start: datetime  # aware, inclusive
    end: datetime  # aware, exclusive

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("a replay window needs aware datetimes")
        if self.start >= self.end:
            raise ValueError("a replay window must start before it ends")

    def contains(self, moment: datetime) -> bool:
        return self.start <= moment < self.end

    @property
    def start_ms(self) -> int:
        return int(self.start.timestamp() * 1000)

    @property
    def end_ms(self) -> int:
        return int(self.end.timestamp() * 1000)

    def as_dict(self) -> dict[str, str]:
        return {"start": self.start.astimezone(UTC).isoformat(),
                "end": self.end.astimezone(UTC).isoformat()}

    @classmethod
    def from_dict(cls, data: dict[str, str]) -> ReplayWindow:
        return cls(datetime.fromisoformat(data["start"]), datetime.fromisoformat(data["end"]))


def calendar_days_window(now: datetime, zone: ZoneInfo, days: int = 3) -> ReplayWindow:
    """From 00:00 local of the day `days - 1` before today up to `now`.

    Re-activated on Wednesday 15:00 Europe/Kyiv → from Monday 00:00 Kyiv. Local midnight is
    taken on the calendar, so a daylight-saving change in between shifts the UTC span, not
    the days; a midnight that does not exist (a spring-forward at 00:00) means the first
    instant of that day.
    """
    if now.tzinfo is None:
        raise ValueError("now must be aware")
    if days < 1:
        raise ValueError("days must be >= 1")
    local_today = now.astimezone(zone).date()
    first_day = local_today - timedelta(days=days - 1)
    midnight = datetime.combine(first_day, time(0), tzinfo=zone)
    # Round-trip through UTC normalises a non-existent local midnight to the day's first instant.
    start = midnight.astimezone(UTC)
    if start.astimezone(zone).date() < first_day:
        start = start + timedelta(hours=1)
    return ReplayWindow(start=start, end=now.astimezone(UTC) + timedelta(microseconds=1))
