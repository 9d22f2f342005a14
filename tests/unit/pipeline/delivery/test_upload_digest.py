"""A record's upload digest: of what the producer sent, the recording aside; made once a work."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from pipeline.delivery.planning import plan_call
from pipeline.delivery.uploads import upload_digest
from pipeline.delivery.work import SourceRef, Work
from schemas.call_event import CallEvent
from schemas.integration import IntegrationConfig
from schemas.mapping import EmployeeMapping
from tests.unit.pipeline.operations.fakekafka import call_json

NOW = datetime(2024, 3, 13, 10, 0, tzinfo=UTC)
CONFIG = IntegrationConfig.model_validate({
    "tenant_id": "acme", "portal_url": "https://acme.retailcrm.ru",
    "admin_email": "admin@acme.example.com", "site_code": "main", "api_key": "k"})


def work(**changes: Any) -> Work:
    raw = json.dumps({**json.loads(call_json("c9", NOW)), **changes}).encode()
    event = CallEvent.model_validate_json(raw)
    plan = plan_call(event, CONFIG, EmployeeMapping(tenant_id="acme", senior_manager_id=28))
    return Work(event=event, plan=plan, raw=raw, key=b"acme", source=SourceRef("calls", 0, 1),
                ack=lambda: None)


def test_the_same_record_has_the_same_digest_whatever_its_recording() -> None:
    first = upload_digest(work())
    assert upload_digest(work()) == first
    assert upload_digest(work(recording_url="https://rec.example.com/c9.mp3")) == first
    assert upload_digest(work(talk_seconds=31)) != first


def test_the_digest_is_made_once_a_work() -> None:
    w = work()
    digest = upload_digest(w)
    assert w.digest == digest
    w.digest = "kept"  # what was made is what is given from then on
    assert upload_digest(w) == "kept"
