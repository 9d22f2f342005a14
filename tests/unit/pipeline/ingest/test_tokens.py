"""The producer token file: only hashes stored, constant-time lookup, re-read on change."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import pytest

from pipeline.ingest.tokens import PREFIX, Producer, TokenError, TokenFile, hash_token


def test_a_token_is_random_shown_once_and_stored_only_as_its_hash(tmp_path: Path) -> None:
    tokens = TokenFile(tmp_path / "t" / "tokens.json")
    first = tokens.add("crm-bridge", ["acme", "beta", "acme"])
    second = tokens.add("pbx", ["zeta"])
    assert first.startswith(PREFIX) and len(first) == len(PREFIX) + 43 and first != second
    text = tokens.path.read_text()
    assert first not in text and first[len(PREFIX):] not in text
    stored = json.loads(text)["producers"]
    assert stored["crm-bridge"]["sha256"] == hashlib.sha256(first.encode()).hexdigest()
    assert stored["crm-bridge"]["tenants"] == ["acme", "beta"]
    assert tokens.path.stat().st_mode & 0o077 == 0
    again = TokenFile(tokens.path)  # another process reading the same file
    assert again.authenticate(first) == Producer(name="crm-bridge",
                                                 tenants=frozenset({"acme", "beta"}))
    assert again.authenticate(second) == Producer(name="pbx", tenants=frozenset({"zeta"}))
    assert [p.name for p in again.producers()] == ["crm-bridge", "pbx"]


def test_wrong_tokens_find_nobody(tmp_path: Path) -> None:
    tokens = TokenFile(tmp_path / "tokens.json")
    token = tokens.add("pbx", ["acme"])
    for wrong in ("", token[:-1], token + "x", token.upper(), hash_token(token),
                  "\udcff", PREFIX):
        assert tokens.authenticate(wrong) is None
    assert TokenFile(tmp_path / "none.json").authenticate(token) is None  # no file: nobody


def test_a_revocation_or_addition_by_another_process_is_seen_at_once(tmp_path: Path) -> None:
    server = TokenFile(tmp_path / "tokens.json")
    old = server.add("pbx", ["acme"])
    server.load()
    cli = TokenFile(server.path)
    assert cli.revoke("pbx")
    assert not cli.revoke("pbx")
    assert server.authenticate(old) is None
    new = cli.add("pbx", ["acme"])  # the name is free again; the old token stays dead
    assert server.authenticate(new) is not None
    assert server.authenticate(old) is None


def test_names_tenants_and_duplicates_are_checked(tmp_path: Path) -> None:
    tokens = TokenFile(tmp_path / "tokens.json")
    tokens.add("pbx", ["acme"])
    for name, tenants in (("pbx", ["acme"]), ("bad name", ["acme"]), ("x", []),
                          ("x", ["no spaces"]), ("", ["acme"])):
        with pytest.raises(TokenError):
            tokens.add(name, tenants)
    assert [p.name for p in tokens.producers()] == ["pbx"]


def test_a_bad_file_stops_start_up_and_later_keeps_the_last_good_one(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "tokens.json"
    with pytest.raises(TokenError, match="cannot be used"):
        TokenFile(path).load()  # missing
    for bad in ("{", "[]", '{"producers": {"x": {"sha256": "00", "tenants": ["a"]}}}',
                '{"producers": {"x": {"sha256": "' + "0" * 64 + '", "tenants": []}}}'):
        path.write_text(bad)
        with pytest.raises(TokenError, match=str(path)):
            TokenFile(path).load()
    path.unlink()
    tokens = TokenFile(path)
    token = tokens.add("pbx", ["acme"])
    path.write_text('{"producers": ')  # a broken hand edit while it runs
    with caplog.at_level(logging.ERROR):
        for _ in range(3):
            assert tokens.authenticate(token) is not None
    assert [r.getMessage().count("cannot be used") for r in caplog.records] == [1]  # once
    assert token not in caplog.text
    other = TokenFile(tmp_path / "other.json")
    new = other.add("pbx", ["acme"])
    other.path.replace(path)  # the edit mended: read again
    assert tokens.authenticate(new) is not None
    assert tokens.authenticate(token) is None
