"""TLS and SASL to the brokers: one place that says how every Kafka client connects."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from faust.auth import SASLCredentials, SSLCredentials

from pipeline.config import KafkaSettings, SettingsError, load_settings


def test_plaintext_by_default() -> None:
    kafka = KafkaSettings()
    assert kafka.client_options() == {"bootstrap_servers": "127.0.0.1:9092",
                                      "security_protocol": "PLAINTEXT"}
    assert kafka.faust_credentials() is None


def test_sasl_over_tls_reaches_aiokafka_and_faust_alike() -> None:
    kafka = KafkaSettings(security_protocol="SASL_SSL", sasl_username="callsync",
                          sasl_password="s3cret-pass")  # type: ignore[arg-type]
    options = kafka.client_options()
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "callsync"
    assert options["sasl_plain_password"] == "s3cret-pass"
    assert isinstance(options["ssl_context"], ssl.SSLContext)
    credentials = kafka.faust_credentials()
    assert isinstance(credentials, SASLCredentials)
    assert credentials.username == "callsync" and credentials.ssl_context is not None
    assert "s3cret-pass" not in repr(kafka)


def test_tls_alone_gives_faust_ssl_credentials() -> None:
    credentials = KafkaSettings(security_protocol="SSL").faust_credentials()
    assert isinstance(credentials, SSLCredentials)


def test_sasl_without_a_password_stops_start_up_naming_the_variables(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLSYNC_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("CALLSYNC_KAFKA__SASL_USERNAME", "callsync")
    with pytest.raises(SettingsError, match="CALLSYNC_KAFKA__SASL_PASSWORD"):
        load_settings()


def test_a_certificate_file_that_is_not_there_is_named(monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Path) -> None:
    monkeypatch.setenv("CALLSYNC_KAFKA__SSL_CAFILE", str(tmp_path / "missing.pem"))
    with pytest.raises(SettingsError, match="CALLSYNC_KAFKA__SSL_CAFILE"):
        load_settings()


@pytest.mark.parametrize("wait", ["0", "1501", "soon"])
def test_a_fetch_wait_out_of_range_is_named(monkeypatch: pytest.MonkeyPatch, wait: str) -> None:
    monkeypatch.setenv("CALLSYNC_KAFKA__FETCH_WAIT_MS", wait)
    with pytest.raises(SettingsError, match="CALLSYNC_KAFKA__FETCH_WAIT_MS"):
        load_settings()


def test_the_event_loop_is_uvloop_unless_set_and_a_bad_one_stops_start_up(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().event_loop == "uvloop"
    monkeypatch.setenv("CALLSYNC_EVENT_LOOP", "asyncio")
    assert load_settings().event_loop == "asyncio"
    monkeypatch.setenv("CALLSYNC_EVENT_LOOP", "libev")
    with pytest.raises(SettingsError, match="CALLSYNC_EVENT_LOOP"):
        load_settings()
