"""The call event contract: what producers may send, what is refused and why."""

from __future__ import annotations

import functools
import json
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas import CallDirection, CallEvent, CallStage, CallStatus
from schemas.call_event import EARLIEST_YEAR, LATEST_YEAR, STARTED_AT_PATTERN
from schemas.publish import CALL_EVENT_SCHEMA_PATH, call_event_schema_text

BASE: dict[str, Any] = {
    "call_id": "rs-1", "tenant_id": "acme", "started_at": "2026-11-25T10:03:00+02:00",
    "direction": "in", "client_phone": "+380501112233", "status": "answered",
}


def event(**changes: Any) -> CallEvent:
    return CallEvent.model_validate_json(json.dumps({**BASE, **changes}))


@functools.cache
def published() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(CALL_EVENT_SCHEMA_PATH.read_text())
    return schema


def refused_at(**changes: Any) -> set[str]:
    """The fields the validation error names."""
    with pytest.raises(ValidationError) as caught:
        event(**changes)
    return {str(loc) for err in caught.value.errors() for loc in err["loc"]}


def test_a_full_event_is_read() -> None:
    e = event(tracking_number="+380443334455", employee={"id": "emp-1", "extension": "101"},
              talk_seconds=61, wait_seconds=7, recording_url="https://rec.example/1.mp3",
              utm={"source": "google", "medium": "cpc", "term": "sofa"}, ga_client_id="GA1.2.3")
    assert e.status is CallStatus.ANSWERED
    assert e.employee is not None and e.employee.extension == "101"
    assert e.utm.term == "sofa" and not e.utm.is_empty()
    assert e.started_at.utcoffset() is not None
    assert e.direction is CallDirection.INBOUND and e.stage is CallStage.ENDED
    assert str(e.recording_url) == "https://rec.example/1.mp3"


@pytest.mark.parametrize(("raw", "normalised"), [
    ("+380 50 111 22 33", "+380501112233"),
    ("380501112233", "+380501112233"),
    ("+7 (495) 123-45-67", "+74951234567"),
    ("+1-212-555-0123", "+12125550123"),
])
def test_phone_numbers_are_normalised_to_e164(raw: str, normalised: str) -> None:
    assert event(client_phone=raw).client_phone == normalised


@pytest.mark.parametrize("raw", ["", "hello", "+1", "+380 12", "0501112233"])
def test_an_unparseable_phone_number_is_a_validation_error(raw: str) -> None:
    with pytest.raises(ValidationError, match="client_phone"):
        event(client_phone=raw)


@pytest.mark.parametrize(("field", "value", "where"), [
    ("started_at", "2026-11-25T10:03:00", "started_at"),  # no offset: ambiguous
    ("direction", "sideways", "direction"),
    ("status", "no answer", "status"),
    ("talk_seconds", -1, "talk_seconds"),
    ("call_id", "", "call_id"),
    ("call_id", "has space", "call_id"),
    ("recording_url", "not a url", "recording_url"),
    ("schema_version", 2, "schema_version"),
    ("recordingUrl", "https://x", "recordingUrl"),  # unknown field: a producer's typo
])
def test_each_violation_names_its_field(field: str, value: Any, where: str) -> None:
    with pytest.raises(ValidationError) as caught:
        event(**{field: value})
    assert where in {str(loc) for err in caught.value.errors() for loc in err["loc"]}


def test_a_missing_recording_is_allowed() -> None:
    assert event().recording_url is None


def test_published_json_schema_matches_the_model() -> None:
    assert CALL_EVENT_SCHEMA_PATH.read_text() == call_event_schema_text(), (
        "schemas/call-event.v1.schema.json is stale: run `python -m pipeline schema --write`")
    schema = json.loads(CALL_EVENT_SCHEMA_PATH.read_text())
    assert set(schema["required"]) == {"call_id", "tenant_id", "started_at", "direction",
                                       "client_phone", "status"}
    assert schema["additionalProperties"] is False


@pytest.mark.parametrize(("field", "value"), [
    ("talk_seconds", "12"), ("talk_seconds", True), ("talk_seconds", 12.0),
    ("wait_seconds", "7"), ("wait_seconds", False), ("wait_seconds", 7.0),
    ("schema_version", "1"), ("schema_version", True), ("schema_version", 1.0),
    ("started_at", 1764057780), ("started_at", 1764057780.5), ("started_at", "1764057780"),
    ("started_at", "2026-11-25T10:03+02:00"),  # no seconds
    ("started_at", "2026-11-25 10:03:00+02:00"),  # ISO 8601 but not RFC 3339's 'T'
    ("started_at", "2026-11-25"),
    ("call_id", 12345), ("tenant_id", True), ("client_phone", 380501112233),
    ("tracking_number", 380443334455), ("ga_client_id", 1.5), ("direction", 1),
    ("recording_url", 1), ("employee", {"id": 17}), ("employee", {"id": "e", "extension": 101}),
    ("utm", {"source": 1}),
])
def test_what_pydantic_would_coerce_is_refused_naming_the_field(field: str, value: Any) -> None:
    assert field in refused_at(**{field: value})


@pytest.mark.parametrize("started_at", [
    "1999-12-31T23:59:59Z", "2101-01-01T00:00:00Z", "9999-12-31T23:59:59+00:00",
    "9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+00:00", "0999-06-01T12:00:00+02:00",
])
def test_a_start_outside_the_supported_years_is_a_schema_error(started_at: str) -> None:
    assert "started_at" in refused_at(started_at=started_at)
    assert not re.fullmatch(STARTED_AT_PATTERN, started_at)  # the published schema agrees


@pytest.mark.parametrize("started_at", [
    "2000-01-01T00:00:00Z", "2000-01-01T00:00:00+05:00", "2100-12-31T23:59:59-12:00",
    "2026-11-25t10:03:00z", "2026-11-25T10:03:00.123456+02:00", "2026-11-25T10:03:00-00:00",
])
def test_rfc_3339_starts_within_the_years_are_read(started_at: str) -> None:
    assert EARLIEST_YEAR <= event(started_at=started_at).started_at.year <= LATEST_YEAR
    assert re.fullmatch(STARTED_AT_PATTERN, started_at)


def test_an_event_built_in_python_takes_a_datetime_but_not_one_out_of_range() -> None:
    start = datetime(2026, 11, 25, 8, 3, tzinfo=UTC)
    assert CallEvent.model_validate({**BASE, "started_at": start}).started_at == start
    with pytest.raises(ValidationError, match="started_at"):
        CallEvent.model_validate({**BASE, "started_at": datetime(9999, 12, 31, tzinfo=UTC)})


def test_the_published_schema_states_the_bounds() -> None:
    started_at = published()["properties"]["started_at"]
    assert started_at["type"] == "string" and started_at["format"] == "date-time"
    assert started_at["pattern"] == STARTED_AT_PATTERN
    assert f"{EARLIEST_YEAR} through {LATEST_YEAR}" in started_at["description"]
    for name in ("talk_seconds", "wait_seconds", "schema_version"):
        assert published()["properties"][name]["type"] == "integer"


# `jsonschema` is not a dependency, so the properties below check the published schema's
# statements about the fields pydantic used to coerce rather than whole documents.
JSON_SCALARS = st.one_of(
    st.integers(-(10**6), 10**6), st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(), st.none(), st.text(max_size=8), st.integers(-100, 100_000).map(str))


@given(field=st.sampled_from(["talk_seconds", "wait_seconds", "schema_version"]),
       value=JSON_SCALARS)
def test_an_integer_field_takes_exactly_what_the_schema_allows(field: str, value: Any) -> None:
    spec = published()["properties"][field]
    allowed = type(value) is int and (
        value == spec["const"] if "const" in spec
        else spec["minimum"] <= value <= spec["maximum"])
    try:
        event(**{field: value})
    except ValidationError as exc:
        assert not allowed, exc
        assert field in {str(loc) for err in exc.errors() for loc in err["loc"]}
    else:
        assert allowed, f"{field}={value!r} was accepted, the schema refuses it"


@given(field=st.sampled_from(["call_id", "tenant_id", "client_phone", "tracking_number",
                              "ga_client_id", "direction", "status", "recording_url"]),
       value=st.one_of(st.integers(), st.floats(allow_nan=False, allow_infinity=False),
                       st.booleans()))
def test_a_number_or_boolean_is_never_a_string(field: str, value: Any) -> None:
    assert field in refused_at(**{field: value})


OFFSETS = st.integers(-(23 * 60 + 59), 23 * 60 + 59).map(
    lambda minutes: timezone(timedelta(minutes=minutes)))
MOMENTS = st.one_of(  # mostly near and inside the supported years, sometimes anywhere
    st.datetimes(min_value=datetime(1999, 6, 1), max_value=datetime(2101, 6, 30),
                 timezones=OFFSETS),
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                 timezones=OFFSETS))


def renderings(moment: datetime) -> st.SearchStrategy[Any]:
    """The ways producers have written a start, RFC 3339 or not."""
    iso = moment.isoformat()
    return st.sampled_from([
        iso, iso.replace("+00:00", "Z"), iso.lower(), moment.isoformat(sep=" "),
        moment.isoformat(timespec="minutes"), moment.isoformat(timespec="milliseconds"),
        moment.replace(tzinfo=None).isoformat(), moment.date().isoformat(),
        moment.timestamp(), int(moment.timestamp()), str(int(moment.timestamp())),
    ])


@given(value=MOMENTS.flatmap(renderings))
def test_a_start_is_accepted_exactly_when_the_published_pattern_matches(value: Any) -> None:
    pattern = published()["properties"]["started_at"]["pattern"]
    allowed = isinstance(value, str) and re.fullmatch(pattern, value) is not None
    try:
        accepted = event(started_at=value)
    except ValidationError as exc:
        assert not allowed, exc
        assert "started_at" in {str(loc) for err in exc.errors() for loc in err["loc"]}
    else:
        assert allowed, f"{value!r} was accepted, the published pattern refuses it"
        assert EARLIEST_YEAR <= accepted.started_at.year <= LATEST_YEAR
