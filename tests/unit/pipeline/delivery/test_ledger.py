"""The ledger merges facts per call, forgets calls past the call topic's retention, and stores
its typed entries as it stored them untyped."""

from __future__ import annotations

import ast
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, get_args

from faust.serializers import codecs

from pipeline.console.overview import Overview
from pipeline.delivery.ledger import (
    CallerFacts,
    CallFacts,
    DiagnosisFacts,
    DiagnosisKey,
    DoneFlag,
    Flag,
    MemoryLedger,
    PopupFlag,
    StatusFlag,
    TableLedger,
    done_flag,
    popup_flag,
    status_flag,
)
from pipeline.delivery.planning import StatusAction
from pipeline.delivery.steps import caller_key
from schemas.call_event import CallStage


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
    ledger.write(("acme", "old"), ("acme", "new"))  # their events settled
    ledger.data["acme|legacy"] = {"done_ended": True}  # written before entries had a time
    assert ledger.prune(older_than=5000.0) == 1
    assert set(ledger.data) == {"acme|new", "acme|legacy"}


# -- typed entries: the stored JSON is what the ledger wrote before it was typed ---------------

# As today's workers write them to the changelog (Faust's json codec), one entry per kind.
CALL_C1 = (b'{"at":1700000000,"popup_started":true,"status_busy":true,"status_before":"free",'
           b'"done_started":true,"popup_answered":true,"done_answered":true,'
           b'"record":"0f1e2d3c4b5a6978","lead":true,"customer_id":41,"order":42,'
           b'"task_pending":true,"task":43,"popup_ended":true,"status_restore":true,"call":true,'
           b'"upload_digest":"0f1e2d3c4b5a6978","recording":"","recorded":false,'
           b'"done_ended":true}')
CALL_M2 = b'{"at":1700000000,"task":43,"task_noted":true}'
CALL_A1 = b'{"at":1700000100,"callback":43}'
CALLER = (b'{"at":1700000100,"customer_id":41,"open_task":null,"open_since":null,'
          b'"closed_task":43}')
DIAGNOSIS = b'{"at":1700000100,"n":1,"pending":false,"task":45,"checked":1700000100.25}'
CALLER_KEY = caller_key("acme", "https://acme.retailcrm.ru", "+380501110001")
ROOT = Path(__file__).resolve().parents[4]
DIAGNOSIS_KEY = DiagnosisKey("#diagnosis/0123456789abcdef0123456789abcdef")


class CountingTable(dict[str, Any]):
    """A table that counts its writes (each one is a changelog record)."""

    writes = 0

    def __setitem__(self, key: str, value: Any) -> None:
        self.writes += 1
        super().__setitem__(key, value)


def test_every_key_an_entry_can_hold_is_the_one_it_had() -> None:
    assert CallFacts.__optional_keys__ == {
        "at", "record", "lead", "customer_id", "order", "task_pending", "task", "task_noted",
        "callback", "call", "upload_digest", "recording", "recorded", "status_before",
        "status_busy", "status_restore", "popup_started", "popup_answered", "popup_ended",
        "done_started", "done_answered", "done_ended"}
    assert CallerFacts.__optional_keys__ == {"at", "customer_id", "open_task", "open_since",
                                             "closed_task"}
    assert DiagnosisFacts.__optional_keys__ == {"at", "n", "pending", "task", "checked"}
    # The keys that depend on the stage or the action, as they were spelt before (f-strings).
    for stage in CallStage:
        assert done_flag(stage) == f"done_{stage.value}"
        assert popup_flag(stage) == f"popup_{stage.value}"
    for action in get_args(StatusAction):
        assert status_flag(action) == f"status_{action}"
    flags = {*get_args(DoneFlag), *get_args(PopupFlag), *get_args(StatusFlag)}
    assert flags <= CallFacts.__optional_keys__
    assert {flag for kind in get_args(Flag) for flag in get_args(kind)} == flags


def test_entries_written_before_read_the_same_through_the_typed_accessors() -> None:
    ledger = MemoryLedger(clock=lambda: 1_800_000_000.0)
    for key, value in [("acme|c1", CALL_C1), ("acme|m2", CALL_M2), ("acme|a1", CALL_A1),
                       (f"acme|{CALLER_KEY}", CALLER), (f"acme|{DIAGNOSIS_KEY}", DIAGNOSIS)]:
        ledger.data[key] = codecs.loads("json", value)  # as the table recovers them
    ledger.data["acme|old"] = {"done_ended": True}  # written before entries had a time

    c1 = ledger.facts("acme", "c1")
    assert c1 == json.loads(CALL_C1)
    assert c1.get(done_flag(CallStage.ENDED)) is True and c1.get(done_flag(CallStage.STARTED))
    assert c1.get(popup_flag(CallStage.ANSWERED)) is True
    assert c1.get(status_flag("busy")) is True and c1.get(status_flag("restore")) is True
    assert (c1["status_before"], c1["record"], c1["lead"]) == ("free", "0f1e2d3c4b5a6978", True)
    assert (c1["customer_id"], c1["order"], c1["task"], c1["call"]) == (41, 42, 43, True)
    assert (c1["recording"], c1["recorded"]) == ("", False)
    m2, a1 = ledger.facts("acme", "m2"), ledger.facts("acme", "a1")
    assert (m2["task"], m2["task_noted"], a1["callback"]) == (43, True, 43)
    assert ledger.facts("acme", "old") == {"done_ended": True}
    assert ledger.facts("acme", "unknown") == {}

    caller = ledger.caller("acme", CALLER_KEY)
    assert caller == json.loads(CALLER) and caller["customer_id"] == 41
    assert caller.get("open_task") is None and caller["closed_task"] == 43
    diagnosis = ledger.diagnosis("acme", DIAGNOSIS_KEY)
    assert diagnosis == json.loads(DIAGNOSIS)
    assert (diagnosis["n"], diagnosis["pending"], diagnosis["task"]) == (1, False, 45)
    assert diagnosis["checked"] == 1_700_000_100.25

    # What is there already is no change: nothing is written again, `at` stays.
    table = CountingTable(ledger.data)
    again = TableLedger(table, clock=lambda: 1_800_000_000.0)
    again.record("acme", "c1", **c1)
    again.mark("acme", "c1", done_flag(CallStage.ENDED))
    again.record_caller("acme", CALLER_KEY, **caller)
    again.record_diagnosis("acme", DIAGNOSIS_KEY, **diagnosis)
    assert table.writes == 0


def test_the_typed_writes_store_the_bytes_the_untyped_ones_did() -> None:
    now = [1_700_000_000.0]
    ledger = MemoryLedger(clock=lambda: now[0])
    digest = "0f1e2d3c4b5a6978"
    # The call's three records, in the order the steps write them.
    ledger.mark("acme", "c1", popup_flag(CallStage.STARTED))
    ledger.record("acme", "c1", status_busy=True, status_before="free")
    ledger.mark("acme", "c1", done_flag(CallStage.STARTED))
    ledger.mark("acme", "c1", popup_flag(CallStage.ANSWERED))
    ledger.mark("acme", "c1", done_flag(CallStage.ANSWERED))
    ledger.record("acme", "c1", record=digest)
    ledger.record("acme", "c1", lead=True)
    ledger.record("acme", "c1", customer_id=41)
    ledger.record("acme", "c1", order=42)
    ledger.record("acme", "c1", task_pending=True)
    ledger.record("acme", "c1", task=43)
    ledger.mark("acme", "c1", popup_flag(CallStage.ENDED))
    ledger.record("acme", "c1", status_restore=True)
    ledger.record("acme", "c1", call=True, upload_digest=digest, recording="", recorded=False)
    ledger.mark("acme", "c1", done_flag(CallStage.ENDED))
    ledger.record("acme", "m2", task=43, task_noted=True)
    # The caller: known, a task opens, a call-back completes it (callback.py).
    ledger.record_caller("acme", CALLER_KEY, customer_id=41)
    now[0] = 1_700_000_100.0
    ledger.record_caller("acme", CALLER_KEY, at=int(now[0]), open_task=43,
                         open_since=1_699_999_990.5)
    ledger.record("acme", "a1", callback=43)
    ledger.record_caller("acme", CALLER_KEY, open_task=None, open_since=None, closed_task=43)
    # A diagnosis task: the intent, then the task (diagnosis.py).
    ledger.record_diagnosis("acme", DIAGNOSIS_KEY, n=1, pending=True, at=int(now[0]))
    ledger.record_diagnosis("acme", DIAGNOSIS_KEY, n=1, task=45, pending=False,
                            checked=1_700_000_100.25, at=int(now[0]))

    ledger.write(("acme", "c1"), ("acme", "m2"), ("acme", "a1"), ("acme", CALLER_KEY))
    stored = {key: codecs.dumps("json", value) for key, value in ledger.data.items()}
    assert stored == {"acme|c1": CALL_C1, "acme|m2": CALL_M2, "acme|a1": CALL_A1,
                      f"acme|{CALLER_KEY}": CALLER, f"acme|{DIAGNOSIS_KEY}": DIAGNOSIS}
    # The console's overview still finds the upload in the changelog.
    overview = Overview()
    overview.apply_ledger(b'"acme|c1"', stored["acme|c1"], 1_700_000_000_000)
    assert overview.last_delivery["acme"] == datetime.fromtimestamp(1_700_000_000, UTC)


def test_every_fact_the_delivery_path_reads_by_name_is_one_an_entry_holds() -> None:
    """mypy checks a fact read as `facts["x"]`, but takes `facts.get("x")` with any name (as
    `object`): those reads are checked here, in the delivery modules' source."""
    known = CallFacts.__optional_keys__ | CallerFacts.__optional_keys__ | \
        DiagnosisFacts.__optional_keys__
    reads: list[str] = []
    for path in sorted((ROOT / "pipeline" / "delivery").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and node.func.attr == "get" and _is_entry(node.func.value) and node.args \
                    and isinstance(name := node.args[0], ast.Constant) \
                    and isinstance(name.value, str):
                reads.append(f"{path.name}:{node.lineno}:{name.value}")
    assert len(reads) > 20, "the entries are read as `facts`, `known`, `lead.facts`, …"
    assert [read for read in reads if read.rsplit(":", 1)[1] not in known] == []


def _is_entry(node: ast.expr) -> bool:
    """An expression that is a ledger entry, as the delivery code names them."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        return node.func.attr in ("facts", "caller", "diagnosis")
    if isinstance(node, ast.Attribute):
        return node.attr == "facts"  # lead.facts
    return isinstance(node, ast.Name) and node.id in ("facts", "known")


def _rejected_by_mypy(ledger: MemoryLedger) -> None:
    """Never run: mypy (strict, so an unneeded ignore is an error) must reject each line."""
    ledger.record("acme", "c1", leed=True)  # type: ignore[call-arg]
    ledger.record("acme", "c1", lead=1)  # type: ignore[arg-type]
    ledger.record("acme", "c1", open_task=1)  # type: ignore[call-arg]
    ledger.mark("acme", "c1", "done_ende")  # type: ignore[arg-type]
    ledger.record_caller("acme", "#caller/x", customer_id=1)  # type: ignore[arg-type]
    ledger.record_diagnosis("acme", DIAGNOSIS_KEY, task="45")  # type: ignore[arg-type]
    ledger.facts("acme", "c1")["callbak"]  # type: ignore[typeddict-item]


class _Counting(dict[str, Any]):
    """A table that counts its writes: each is a changelog record a restart reads back."""

    writes = 0

    def __setitem__(self, key: str, value: Any) -> None:
        self.writes += 1
        super().__setitem__(key, value)


async def test_facts_are_read_at_once_and_written_once_per_entry() -> None:
    table = _Counting()
    awaited: list[tuple[list[str], int]] = []  # the keys a sync waited for, the writes by then

    async def durable(keys: list[str]) -> None:
        awaited.append((keys, table.writes))

    ledger = TableLedger(table, durable=durable, clock=lambda: 1_700_000_000.0)
    ledger.record("acme", "c1", lead=True)
    ledger.record("acme", "c1", customer_id=5)
    ledger.record_caller("acme", caller_key("acme", "https://acme.example", "+380501"),
                         customer_id=5)
    ledger.record("acme", "c2", lead=False)
    assert ledger.facts("acme", "c1") == {"at": 1_700_000_000, "lead": True, "customer_id": 5}
    assert table.writes == 0
    ledger.write(("acme", "c1"))  # c1 acknowledged: its entry alone, in one record
    assert table == {"acme|c1": {"at": 1_700_000_000, "lead": True, "customer_id": 5}}
    assert table.writes == 1
    await ledger.sync(("acme", "c2"))  # durable before a create of c2's: written, then awaited
    assert set(table) == {"acme|c1", "acme|c2"} and awaited == [(["acme|c2"], 2)]
    ledger.record("acme", "c1", order=6)
    ledger.record("globex", "c7", lead=True)
    assert ledger.write_where(lambda tenant_id: tenant_id == "acme") == 2  # c1, the caller
    assert table.writes == 4 and table["acme|c1"]["order"] == 6
    ledger.record("acme", "c1", order=6)  # no change: nothing to write
    ledger.write(("acme", "c1"))
    assert table.writes == 4
    # globex's partition moved on: what is still gathered for it is never written here.
    assert ledger.drop_where(lambda tenant_id: tenant_id == "globex") == 1
    assert ledger.facts("globex", "c7") == {}
    await ledger.sync(("globex", "c7"))
    assert "globex|c7" not in table and awaited[1:] == [(["globex|c7"], 4)]
