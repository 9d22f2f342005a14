"""The worker's runtime with an operator key and a key ring, as a started worker has them."""

from __future__ import annotations

import pytest

from agents import calls
from pipeline import runtime
from tests.unit.trust import KEYRING, OPERATOR_KEY, RECORD_KEY


@pytest.fixture(autouse=True)
def fresh_gate() -> None:
    """Each test's records start a partition's reading anew (`test_context` hands every test
    the same offsets, which one worker's gate would rightly take for reads of the same record)."""
    calls.gate.__init__()  # type: ignore[misc]


@pytest.fixture(autouse=True)
def trusted_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime.directory, "keyring", KEYRING)
    monkeypatch.setattr(runtime.directory, "record_key", RECORD_KEY)
    monkeypatch.setattr(runtime.records, "keyring", KEYRING)
    monkeypatch.setattr(runtime.records, "key", RECORD_KEY)
    monkeypatch.setattr(runtime.desk, "keyring", KEYRING)
    monkeypatch.setattr(runtime.desk, "operator_key", OPERATOR_KEY)
