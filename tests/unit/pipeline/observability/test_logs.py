"""Secrets never reach a log line, plain or JSON."""

from __future__ import annotations

import io
import json
import logging
import logging.config

import pytest

from pipeline.observability.logs import REDACTED, SecretRedactor, logging_config, redactor

KEY = "tenant-key-0123456789"


@pytest.mark.parametrize("json_lines", [False, True])
def test_a_registered_key_is_redacted_in_messages_arguments_and_tracebacks(
        json_lines: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr("sys.stdout", stream)
    saved = logging.root.handlers[:], logging.root.level
    logging.config.dictConfig(logging_config(json_lines=json_lines))
    try:
        redactor.register(KEY)
        log = logging.getLogger("callsync.test")
        log.warning("key in the text %s", KEY, extra={"call_id": "c1"})
        try:
            raise RuntimeError(f"boom with {KEY}")
        except RuntimeError:
            log.exception("failed")
    finally:
        logging.root.handlers[:] = saved[0]
        logging.root.setLevel(saved[1])
    out = stream.getvalue()
    assert KEY not in out and REDACTED in out
    if json_lines:
        first = json.loads(out.splitlines()[0])
        assert first["call_id"] == "c1" and first["level"] == "WARNING"


def test_short_strings_are_not_treated_as_secrets() -> None:
    r = SecretRedactor()
    r.register("ab")
    assert r.scrub("abc") == "abc"
