"""Session cookies: signed, expiring, never taken when forged or malformed."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from pipeline.console.sessions import SessionCodec, load_or_create_secret


def test_a_session_survives_its_cookie_and_nothing_else_does() -> None:
    now = [1000.0]
    codec = SessionCodec(b"x" * 32, max_age=60, clock=lambda: now[0])
    session = codec.new("olga")
    cookie = codec.dump(session)
    assert codec.load(cookie) == session
    payload, signature = cookie.split(".")
    other = SessionCodec(b"y" * 32, clock=lambda: now[0])
    assert other.load(cookie) is None, "another console's secret"
    assert codec.load(payload + "." + signature[::-1]) is None
    forged = codec.dump(codec.new("root")).split(".")[0] + "." + signature
    assert codec.load(forged) is None
    for junk in ("", "abc", "a.b.c", "!!!.###"):
        assert codec.load(junk) is None
    now[0] += 61
    assert codec.load(cookie) is None, "expired"


def test_every_session_has_its_own_csrf_token() -> None:
    codec = SessionCodec(b"x" * 32)
    assert codec.new("olga").csrf != codec.new("olga").csrf


def test_a_short_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        SessionCodec(b"short")


def test_the_secret_is_kept_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "console" / "session.key"
    first = load_or_create_secret(path)
    assert len(first) == 32 and load_or_create_secret(path) == first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
