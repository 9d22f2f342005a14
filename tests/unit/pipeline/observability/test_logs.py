"""Secrets never reach a log line, plain or JSON."""

from __future__ import annotations

import base64
import io
import json
import logging
import logging.config
from urllib.parse import quote

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


def test_every_form_of_many_keys_is_redacted_wherever_it_stands() -> None:
    r = SecretRedactor(phones=False)
    keys = [f"key-{n:05d}-{'x' * (n % 7)}-tail" for n in range(10_000)]
    for key in keys:
        r.register(key)
    r.register("abcdefgh")
    r.register("abcdefghijkl")  # the other's longer sibling: the longest at a place wins
    line = (f"{keys[0]}|{keys[9_999]}{keys[5_000]} a%2F{quote(keys[42], safe='')}"
            f" b64 {base64.b64encode(keys[7].encode()).decode()} then abcdefghijkl, "
            f"abcdefgh. and abcd stays; at the end {keys[123]}")
    out = r.scrub(line)
    assert out == (f"{REDACTED}|{REDACTED}{REDACTED} a%2F{REDACTED} b64 {REDACTED} then "
                   f"{REDACTED}, {REDACTED}. and abcd stays; at the end {REDACTED}")
    assert r.scrub("nothing secret here, +380501112233") == "nothing secret here, +380501112233"


def test_a_line_of_nothing_but_secrets_and_a_line_shorter_than_one() -> None:
    r = SecretRedactor(phones=False)
    r.register("s3cr3t-key")
    assert r.scrub("s3cr3t-keys3cr3t-key") == REDACTED * 2
    assert r.scrub("s3c") == "s3c" and r.scrub("") == ""
