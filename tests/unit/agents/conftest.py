"""The worker's runtime with an operator key and a key ring, as a started worker has them."""

from __future__ import annotations

from typing import Any
from unittest.mock import AsyncMock

import pytest

from agents import calls
from pipeline import runtime
from pipeline.streams.offsets import Lease
from tests.unit.trust import KEYRING, OPERATOR_KEY, RECORD_KEY


@pytest.fixture
def invalid(monkeypatch: pytest.MonkeyPatch) -> AsyncMock:
    """The invalid-events topic, as a mock the tests read the reasons from."""
    edge = AsyncMock()
    monkeypatch.setattr(runtime.outlets, "invalid", edge)
    return edge


@pytest.fixture(autouse=True)
def fresh_gate(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test's records start a partition's reading anew (`test_context` hands every test
    the same offsets, which one worker's gate would rightly take for reads of the same record),
    and a generation starts at its first record, as the hole filler (not running here) would
    look up for a partition never committed."""
    gate = calls.gate
    gate.__init__()  # type: ignore[misc]
    read = gate.read

    def read_from_the_start(topic: str, partition: int, offset: int, **kw: Any) -> Lease:
        lease = read(topic, partition, offset, **kw)
        for key, generation in gate.unbased():
            gate.set_base(key, generation, offset)
        return lease

    monkeypatch.setattr(gate, "read", read_from_the_start)


@pytest.fixture(autouse=True)
def trusted_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime.directory, "keyring", KEYRING)
    monkeypatch.setattr(runtime.directory, "record_key", RECORD_KEY)
    monkeypatch.setattr(runtime.records, "keyring", KEYRING)
    monkeypatch.setattr(runtime.records, "key", RECORD_KEY)
    monkeypatch.setattr(runtime.desk, "keyring", KEYRING)
    monkeypatch.setattr(runtime.desk, "operator_key", OPERATOR_KEY)


@pytest.fixture(autouse=True)
def one_partition(monkeypatch: pytest.MonkeyPatch) -> None:
    """`test_context` hands every record over on partition 0, whatever its key: as if the call
    topic had that one partition, where every tenant is at home (records produced elsewhere
    are moved home first: tests/unit/pipeline/delivery/test_routing.py)."""
    monkeypatch.setattr(runtime.router, "partitions", 1)
