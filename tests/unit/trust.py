"""A key ring and an operator key for unit tests, and tenant records signed with them."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from pipeline.secrets import KeyRing
from pipeline.signing import RecordKind, record_key, seal_record

OPERATOR_KEY = b"unit-operator-key"
RECORD_KEY = record_key(OPERATOR_KEY)
KEYRING = KeyRing([("k1", bytes(range(32)))])


def config_record(config: dict[str, Any], *, keyring: KeyRing = KEYRING) -> dict[str, Any]:
    """A config as to_stored() writes it: the key an envelope for its tenant."""
    return {**config, "api_key": keyring.encrypt(config["api_key"],
                                                 tenant_id=config["tenant_id"])}


def signed(kind: RecordKind, record: dict[str, Any], *, key: bytes = RECORD_KEY,
           signed_at: datetime | None = None) -> bytes:
    return json.dumps(seal_record(kind, record, key,
                                  signed_at=signed_at or datetime.now(UTC))).encode()
