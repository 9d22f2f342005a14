"""The call event's JSON Schema for producers, generated from the model, never written by hand."""

from __future__ import annotations

import json
from pathlib import Path

from schemas.call_event import CallEvent

__all__ = ["CALL_EVENT_SCHEMA_PATH", "call_event_schema_text"]

CALL_EVENT_SCHEMA_PATH = Path(__file__).with_name("call-event.v1.schema.json")


def call_event_schema_text() -> str:
    schema = CallEvent.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return json.dumps(schema, indent=2, ensure_ascii=False, sort_keys=True) + "\n"
