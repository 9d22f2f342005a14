"""`python -m pipeline ingest-token add|list|revoke` and `ingest`'s refusal of bad settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.__main__ import main
from pipeline.config import SettingsError
from pipeline.ingest.tokens import PREFIX, TokenFile


def test_add_prints_the_token_once_and_list_and_revoke_manage_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "tokens.json"
    assert main(["ingest-token", "add", "--name", "pbx", "--tenants", "acme, beta",
                 "--file", str(path)]) == 0
    out, err = capsys.readouterr()
    token = out.strip()
    assert token.startswith(PREFIX) and out == token + "\n"  # stdout: the token alone
    assert "acme, beta" in err and token not in err
    assert token not in path.read_text()
    assert TokenFile(path).authenticate(token) is not None

    assert main(["ingest-token", "list", "--file", str(path)]) == 0
    assert capsys.readouterr().out == "pbx\tacme,beta\n"

    with pytest.raises(SystemExit, match="exists"):
        main(["ingest-token", "add", "--name", "pbx", "--tenants", "x", "--file", str(path)])
    assert main(["ingest-token", "revoke", "--name", "pbx", "--file", str(path)]) == 0
    assert main(["ingest-token", "revoke", "--name", "pbx", "--file", str(path)]) == 1
    assert TokenFile(path).authenticate(token) is None
    capsys.readouterr()
    assert main(["ingest-token", "list", "--file", str(path)]) == 0
    assert capsys.readouterr().out == ""


def test_the_file_defaults_to_the_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "from-env.json"
    monkeypatch.setenv("CALLSYNC_INGEST__TOKENS_FILE", str(path))
    assert main(["ingest-token", "add", "--name", "pbx", "--tenants", "acme"]) == 0
    assert [p.name for p in TokenFile(path).producers()] == ["pbx"]


@pytest.mark.parametrize(("variable", "value"), [
    ("CALLSYNC_INGEST__PORT", "0"), ("CALLSYNC_INGEST__MAX_IN_FLIGHT", "many"),
    ("CALLSYNC_INGEST__SEND_TIMEOUT_SECONDS", "-1"), ("CALLSYNC_INGEST__MAX_EVENTS", "0")])
def test_a_bad_setting_stops_the_ingest_naming_it(
        variable: str, value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=variable):
        main(["ingest"])


def test_more_events_per_request_than_in_flight_is_refused(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLSYNC_INGEST__MAX_EVENTS", "600")
    monkeypatch.setenv("CALLSYNC_INGEST__MAX_IN_FLIGHT", "500")
    with pytest.raises(SettingsError, match="CALLSYNC_INGEST__MAX_EVENTS must not exceed"):
        main(["ingest"])


def test_the_ingest_does_not_start_without_a_usable_tokens_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLSYNC_INGEST__TOKENS_FILE", str(tmp_path / "missing.json"))
    with pytest.raises(SettingsError, match=r"CALLSYNC_INGEST__TOKENS_FILE: .*missing\.json"):
        main(["ingest"])
