"""What has been done in the CRM for each call, so redelivery and replay create nothing twice."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any, Final, Literal, NewType, Protocol, TypedDict, Unpack, cast

from pipeline.delivery.planning import StatusAction
from schemas.call_event import CallStage

__all__ = ["CallFacts", "CallerFacts", "CallerKey", "DiagnosisFacts", "DiagnosisKey", "DoneFlag",
           "Flag", "Ledger", "MemoryLedger", "PopupFlag", "StatusFlag", "TableLedger",
           "done_flag", "ledger_key", "popup_flag", "status_flag"]

# Every key an entry can hold is named here, once per kind: the table's changelog is read by
# deployed workers and by the console (`call`), so a name never changes.

DoneFlag = Literal["done_started", "done_answered", "done_ended"]
PopupFlag = Literal["popup_started", "popup_answered", "popup_ended"]
StatusFlag = Literal["status_busy", "status_restore"]
Flag = DoneFlag | PopupFlag | StatusFlag  # the call's facts that are only ever True


class CallFacts(TypedDict, total=False):
    """A call's entry, under its call id."""

    at: int  # epoch seconds of its first record: `prune` goes by it
    record: str  # digest of the first `ended` record (`uploads.upload_digest`): it wins
    lead: bool  # the lead decision, made once
    customer_id: int  # the customer made for it
    order: int
    task_pending: bool  # a task create is under way (retailCRM does not de-duplicate tasks)
    task: int  # its own task, or the caller's open one its line went on (`task_noted`)
    task_noted: bool
    callback: int  # the caller's open task it completed (the call-back loop)
    call: bool  # uploaded; the console's overview reads it from the changelog
    upload_digest: str
    recording: str  # digest of the uploaded recording URL, "" for none
    recorded: bool
    status_before: str | None  # the user's status before `status_busy`
    status_busy: bool
    status_restore: bool
    popup_started: bool
    popup_answered: bool
    popup_ended: bool
    done_started: bool  # every step of that stage's record succeeded
    done_answered: bool
    done_ended: bool


class CallerFacts(TypedDict, total=False):
    """What a portal is known to hold for a caller, under `steps.caller_key`."""

    at: int  # stamped anew when a task opens: the caller may be known for long
    customer_id: int
    open_task: int | None  # the call-back loop's open task, and when its missed call started
    open_since: float | None
    closed_task: int  # the task the last call-back completed


class DiagnosisFacts(TypedDict, total=False):
    """A self-diagnosis problem's task, under `diagnosis.diagnosis_key`."""

    at: int  # stamped at every check: the task may be open for long
    n: int  # how many tasks were made for it (the marker's generation)
    pending: bool  # a create is under way
    task: int | None  # the open one
    checked: float  # epoch seconds


# The keys of entries that are not a call's; `#` is in no call id.
CallerKey = NewType("CallerKey", str)
DiagnosisKey = NewType("DiagnosisKey", str)

_DONE: Final[Mapping[CallStage, DoneFlag]] = {
    CallStage.STARTED: "done_started", CallStage.ANSWERED: "done_answered",
    CallStage.ENDED: "done_ended"}
_POPUP: Final[Mapping[CallStage, PopupFlag]] = {
    CallStage.STARTED: "popup_started", CallStage.ANSWERED: "popup_answered",
    CallStage.ENDED: "popup_ended"}
_STATUS: Final[Mapping[StatusAction, StatusFlag]] = {
    "busy": "status_busy", "restore": "status_restore"}


def done_flag(stage: CallStage) -> DoneFlag:
    return _DONE[stage]


def popup_flag(stage: CallStage) -> PopupFlag:
    return _POPUP[stage]


def status_flag(action: StatusAction) -> StatusFlag:
    return _STATUS[action]


def ledger_key(tenant_id: str, call_id: str) -> str:
    return f"{tenant_id}|{call_id}"


class Ledger(Protocol):
    def facts(self, tenant_id: str, call_id: str) -> CallFacts: ...

    def record(self, tenant_id: str, call_id: str, **facts: Unpack[CallFacts]) -> None: ...

    def mark(self, tenant_id: str, call_id: str, flag: Flag) -> None:
        """Record one of the call's flags as True."""

    def caller(self, tenant_id: str, key: CallerKey) -> CallerFacts: ...

    def record_caller(self, tenant_id: str, key: CallerKey,
                      **facts: Unpack[CallerFacts]) -> None: ...

    def diagnosis(self, tenant_id: str, key: DiagnosisKey) -> DiagnosisFacts: ...

    def record_diagnosis(self, tenant_id: str, key: DiagnosisKey,
                         **facts: Unpack[DiagnosisFacts]) -> None: ...

    def write(self, *entries: tuple[str, str]) -> None:
        """Hand what was recorded for these entries (tenant id, call id or caller key) to the
        store: an event's before it is acknowledged, so they are made durable with the commit
        over it."""

    async def sync(self, *entries: tuple[str, str]) -> None:
        """Return once what was recorded for these entries, and all written before for their
        tenants, is durable."""


class TableLedger:
    """Backed by a mapping (a Faust table partitioned by tenant, so the facts sit with the calls).

    Every write to the table is a changelog record, and a restart reads them all back (a call
    gathers some eight facts on its way). So facts are gathered per entry, read at once, and
    written when their event is acknowledged (`outcomes.finish` writes the call's entry and its
    caller's), at once where a task was made or changed (`Steps.write_now`: retailCRM does not
    de-duplicate tasks), or durably first where a create needs them (`sync`): one record per
    entry in between however many facts it gained. A sync waits for its entries' records (and
    so for its tenants' earlier ones), not for the whole producer: the committer flushes that
    before it commits offsets, so what the ledger says of an event is durable no later than
    the commit over it; what a crash loses before that belongs to events read again after it.
    A release writes the moving partitions' entries and drops what is gathered for them after
    it (`write_where`, `drop_where` in agents/calls.py).
    The entries are plain dicts of the kinds above, stored as they are (the casts cost nothing).
    """

    def __init__(self, table: MutableMapping[str, Any],
                 durable: Callable[[list[str]], Awaitable[object]] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self._table = table
        self._durable = durable  # returns once these keys are acknowledged
        self._clock = clock
        self._pending: dict[str, dict[str, Any]] = {}  # entries recorded, not yet written

    def facts(self, tenant_id: str, call_id: str) -> CallFacts:
        return cast(CallFacts, self._entry(tenant_id, call_id))

    def record(self, tenant_id: str, call_id: str, **facts: Unpack[CallFacts]) -> None:
        self._merge(tenant_id, call_id, facts)

    def mark(self, tenant_id: str, call_id: str, flag: Flag) -> None:
        self._merge(tenant_id, call_id, {flag: True})

    def caller(self, tenant_id: str, key: CallerKey) -> CallerFacts:
        return cast(CallerFacts, self._entry(tenant_id, key))

    def record_caller(self, tenant_id: str, key: CallerKey,
                      **facts: Unpack[CallerFacts]) -> None:
        self._merge(tenant_id, key, facts)

    def diagnosis(self, tenant_id: str, key: DiagnosisKey) -> DiagnosisFacts:
        return cast(DiagnosisFacts, self._entry(tenant_id, key))

    def record_diagnosis(self, tenant_id: str, key: DiagnosisKey,
                         **facts: Unpack[DiagnosisFacts]) -> None:
        # Not an event's: written at once (the diagnosis syncs before a create of its own).
        self._merge(tenant_id, key, facts)
        self.write((tenant_id, key))

    def write(self, *entries: tuple[str, str]) -> None:
        for entry in (ledger_key(tenant_id, key) for tenant_id, key in entries):
            value = self._pending.pop(entry, None)
            if value is not None:
                self._table[entry] = value

    def write_where(self, tenants: Callable[[str], bool]) -> int:
        """Write what was gathered for these tenants (their partitions are released, or the
        worker stops): the events under way were true to it, and the next owner reads it."""
        entries = self._where(tenants)
        for entry in entries:
            self._table[entry] = self._pending.pop(entry)
        return len(entries)

    def drop_where(self, tenants: Callable[[str], bool]) -> int:
        """Forget what is still gathered for these tenants once their partitions moved on: the
        next owner's table is the truth. Written later, it would overwrite that owner's newer
        facts in the changelog; kept, it would shadow them if the partitions came back."""
        entries = self._where(tenants)
        for entry in entries:
            del self._pending[entry]
        return len(entries)

    def _where(self, tenants: Callable[[str], bool]) -> list[str]:
        return [entry for entry in self._pending if tenants(entry.split("|", 1)[0])]

    def _current(self, entry: str) -> Any:
        pending = self._pending.get(entry)
        return pending if pending is not None else self._table.get(entry)

    def _entry(self, tenant_id: str, key: str) -> dict[str, Any]:
        value = self._current(ledger_key(tenant_id, key))
        return dict(value) if isinstance(value, dict) else {}

    def _merge(self, tenant_id: str, key: str, facts: Mapping[str, object]) -> None:
        """Into the current entry; `at` is stamped when the entry is made, and only a change
        is kept for the next write."""
        entry = ledger_key(tenant_id, key)
        current = self._current(entry)
        merged = {**(current if isinstance(current, dict) else {"at": int(self._clock())}),
                  **facts}
        if merged != current:
            self._pending[entry] = merged

    def prune(self, older_than: float) -> int:
        """Forget calls first recorded before `older_than` (epoch seconds): their events are
        past the call topic's retention, so nothing can deliver them again."""
        stale = [key for key, value in list(self._table.items())
                 if isinstance(value, dict) and value.get("at", older_than) < older_than]
        for key in stale:
            del self._table[key]
        return len(stale)

    async def sync(self, *entries: tuple[str, str]) -> None:
        self.write(*entries)
        if self._durable is not None:
            await self._durable([ledger_key(tenant_id, key) for tenant_id, key in entries])


class MemoryLedger(TableLedger):
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.data: dict[str, Any] = {}
        super().__init__(self.data, clock=clock)
