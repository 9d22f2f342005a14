"""Tenant records as the control desk signs them, and what opening one refuses."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pipeline.delivery.intake import TenantDirectory
from pipeline.signing import (
    RecordKind,
    RecordRefused,
    RecordWriter,
    open_record,
    record_key,
    seal_record,
    sign,
)
from schemas.integration import IntegrationConfig
from schemas.mapping import EmployeeMapping
from tests.unit.trust import KEYRING, OPERATOR_KEY, RECORD_KEY, config_record

NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
CONFIG = {"tenant_id": "acme", "portal_url": "https://acme.retailcrm.ru",
          "admin_email": "admin@acme.example.com", "site_code": "main",
          "api_key": "k-acme-123456"}


def sealed(kind: RecordKind = "integration", **changes: Any) -> dict[str, Any]:
    return seal_record(kind, config_record(CONFIG), RECORD_KEY, signed_at=NOW) | changes


@pytest.mark.parametrize(("value", "reason"), [
    (config_record(CONFIG), "unsigned"),
    ("not a dict", "unsigned"),
    (seal_record("integration", config_record(CONFIG), b"another key", signed_at=NOW),
     "bad_signature"),
    ({"body": {}, "signature": "zz"}, "bad_signature"),
])
def test_what_is_not_signed_with_the_record_key_is_refused(value: object, reason: str) -> None:
    with pytest.raises(RecordRefused) as refused:
        open_record(value, kind="integration", key=RECORD_KEY)
    assert refused.value.reason == reason


def test_a_changed_field_breaks_the_signature() -> None:
    record = sealed()
    record["body"]["record"]["portal_url"] = "https://evil.example.com"
    with pytest.raises(RecordRefused, match="bad_signature"):
        open_record(record, kind="integration", key=RECORD_KEY)


def test_a_mapping_is_not_an_integration() -> None:
    with pytest.raises(RecordRefused) as refused:
        open_record(sealed("mapping"), kind="integration", key=RECORD_KEY)
    assert refused.value.reason == "wrong_kind"


def test_a_signed_command_is_never_a_valid_record() -> None:
    body = sealed()["body"]
    as_command = {"body": body, "signature": sign(body, OPERATOR_KEY)}
    with pytest.raises(RecordRefused, match="bad_signature"):
        open_record(as_command, kind="integration", key=RECORD_KEY)
    assert record_key(OPERATOR_KEY) != OPERATOR_KEY


def test_the_directory_opens_a_signed_record_and_decrypts_only_there() -> None:
    stored = sealed()
    assert "k-acme-123456" not in json.dumps(stored)
    directory = TenantDirectory({"acme": stored}, {}, keyring=KEYRING, record_key=RECORD_KEY)
    config = directory.config("acme")
    assert config is not None and config.api_key.get_secret_value() == "k-acme-123456"


@pytest.mark.parametrize("directory", [
    TenantDirectory({"acme": config_record(CONFIG)}, {}, keyring=KEYRING, record_key=RECORD_KEY),
    TenantDirectory({"acme": {**CONFIG}}, {}, keyring=KEYRING, record_key=RECORD_KEY),
    TenantDirectory({"acme": sealed()}, {}, keyring=None, record_key=RECORD_KEY),
    TenantDirectory({"acme": sealed()}, {}, keyring=KEYRING, record_key=None),
])
def test_a_stored_config_that_does_not_verify_or_decrypt_is_no_config(
        directory: TenantDirectory, caplog: pytest.LogCaptureFixture) -> None:
    assert directory.config("acme") is None
    assert "k-acme-123456" not in caplog.text


def test_a_stored_config_copied_to_another_tenant_does_not_decrypt() -> None:
    evil = config_record({**CONFIG, "tenant_id": "evil"})
    evil["api_key"] = config_record(CONFIG)["api_key"]  # acme's envelope
    stored = seal_record("integration", evil, RECORD_KEY, signed_at=NOW)
    directory = TenantDirectory({"evil": stored}, {}, keyring=KEYRING, record_key=RECORD_KEY)
    assert directory.config("evil") is None


def test_an_envelope_is_never_taken_for_a_key() -> None:
    with pytest.raises(ValueError, match="still encrypted"):
        IntegrationConfig.model_validate(config_record(CONFIG))


async def test_the_writer_signs_stores_publishes_and_moves_time_forward() -> None:
    integrations: dict[str, Any] = {}
    mappings: dict[str, Any] = {}
    published: list[tuple[str, bytes, bytes]] = []

    async def publish(kind: RecordKind, key: bytes, value: bytes) -> None:
        published.append((kind, key, value))

    clock = [NOW]
    writer = RecordWriter(key=RECORD_KEY, keyring=KEYRING, integrations=integrations,
                          mappings=mappings, publish=publish, clock=lambda: clock[0])
    await writer.write_config(IntegrationConfig.model_validate(CONFIG))
    await writer.write_mapping(EmployeeMapping(tenant_id="acme", senior_manager_id=28))
    assert [(k, key) for k, key, _ in published] == [("integration", b"acme"),
                                                      ("mapping", b"acme")]
    assert published[0][2] == integrations["acme"], "the bytes stored are those published"
    assert b"k-acme-123456" not in published[0][2]
    directory = TenantDirectory(integrations, mappings, keyring=KEYRING, record_key=RECORD_KEY)
    assert directory.stored_mapping("acme").senior_manager_id == 28
    clock[0] = NOW - timedelta(minutes=3)  # this worker's clock is behind the last writer's
    await writer.write_config(IntegrationConfig.model_validate(CONFIG))
    later = open_record(integrations["acme"], kind="integration", key=RECORD_KEY).signed_at
    assert later == NOW + timedelta(milliseconds=1)
