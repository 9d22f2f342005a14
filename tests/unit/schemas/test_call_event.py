"""The call event contract: what producers may send, what is refused and why."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from schemas import CallEvent, CallStatus
from schemas.publish import CALL_EVENT_SCHEMA_PATH, call_event_schema_text

BASE: dict[str, Any] = {
    "call_id": "rs-1", "tenant_id": "acme", "started_at": "2026-11-25T10:03:00+02:00",
    "direction": "in", "client_phone": "+380501112233", "status": "answered",
}


def event(**changes: Any) -> CallEvent:
    return CallEvent.model_validate_json(json.dumps({**BASE, **changes}))


def test_a_full_event_is_read() -> None:
    e = event(tracking_number="+380443334455", employee={"id": "emp-1", "extension": "101"},
              talk_seconds=61, wait_seconds=7, recording_url="https://rec.example/1.mp3",
              utm={"source": "google", "medium": "cpc", "term": "sofa"}, ga_client_id="GA1.2.3")
    assert e.status is CallStatus.ANSWERED
    assert e.employee is not None and e.employee.extension == "101"
    assert e.utm.term == "sofa" and not e.utm.is_empty()
    assert e.started_at.utcoffset() is not None


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
