"""The ledger merges facts per call and forgets calls past the call topic's retention."""

from __future__ import annotations

from pipeline.delivery.ledger import MemoryLedger


def test_facts_merge_and_changes_only_are_written() -> None:
    now = [1000.0]
    ledger = MemoryLedger(clock=lambda: now[0])
    ledger.record("acme", "c1", lead=True)
    ledger.record("acme", "c1", customer_id=5)
    assert ledger.facts("acme", "c1") == {"at": 1000, "lead": True, "customer_id": 5}
    assert ledger.facts("acme", "c2") == {}


def test_prune_forgets_only_old_calls() -> None:
    now = [1000.0]
    ledger = MemoryLedger(clock=lambda: now[0])
    ledger.record("acme", "old", done_ended=True)
    now[0] = 9000.0
    ledger.record("acme", "new", done_ended=True)
    ledger.data["acme|legacy"] = {"done_ended": True}  # written before entries had a time
    assert ledger.prune(older_than=5000.0) == 1
    assert set(ledger.data) == {"acme|new", "acme|legacy"}
