"""The CRM state a chaos run must end with, restated from the product rules, and the differences.

The golden is computed from the input alone (the same rules as `Expected` in the end-to-end
tests), never from a run: a call per call id with its result and who handled it; per inbound
caller one customer, managed by whoever handled their first inbound call (else the senior
manager), and one order made on that first call; a task per missed inbound call for the
customer's manager.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeline.devtools.devstack import DevTenant

__all__ = ["KINDS", "Golden", "Tally", "compare", "expected"]

KINDS = ("calls", "customers", "orders", "tasks")
RESULT = {"answered": "answered", "no_answer": "no answer", "busy": "busy",
          "failed": "failed", "cancelled": "no answer"}
TASK_CALL = re.compile(r"^Call (\S+) at ")
EXAMPLES = 5


@dataclass
class Golden:
    """One portal's expected state."""

    tenant_id: str
    calls: dict[str, tuple[str, int | None, str | None]] = field(default_factory=dict)
    customers: dict[str, int] = field(default_factory=dict)  # phone -> manager
    orders: dict[str, tuple[str, int]] = field(default_factory=dict)  # phone -> (call, manager)
    tasks: dict[str, tuple[int, str]] = field(default_factory=dict)  # call -> (performer, phone)

    def sizes(self) -> dict[str, int]:
        return {kind: len(getattr(self, kind)) for kind in KINDS}


def expected(events: Iterable[Mapping[str, Any]], tenant: DevTenant) -> Golden:
    links = {emp: link.crm_user_id for emp, link in tenant.mapping.employees.items()}
    tid = tenant.config.tenant_id
    want = Golden(tid)
    for e in events:
        if e["tenant_id"] != tid:
            continue
        employee = e.get("employee") or {}
        mapped = links.get(employee.get("id", ""))
        code = employee.get("extension") if mapped is None else None
        want.calls[e["call_id"]] = (RESULT[e["status"]], mapped, code)
        if e["direction"] != "in":
            continue
        phone = e["client_phone"]
        if phone not in want.customers:  # a new lead: its customer and order, on this call
            want.customers[phone] = mapped or tenant.senior_manager_id
            want.orders[phone] = (e["call_id"], want.customers[phone])
        if e["status"] != "answered":  # a missed call: the customer's manager calls back
            want.tasks[e["call_id"]] = (want.customers[phone], phone)
    return want


@dataclass
class Tally:
    """How one entity kind of one or more portals differs from the golden."""

    expected: int = 0
    lost: int = 0
    duplicated: int = 0
    misattributed: int = 0
    extra: int = 0  # objects the golden has no place for at all
    examples: list[str] = field(default_factory=list)

    def note(self, what: str, count: int, example: str) -> None:
        setattr(self, what, getattr(self, what) + count)
        if count and len(self.examples) < EXAMPLES:
            self.examples.append(f"{what}: {example}")

    def add(self, other: Tally) -> None:
        for name in ("expected", "lost", "duplicated", "misattributed", "extra"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.examples += other.examples[:max(0, EXAMPLES - len(self.examples))]

    @property
    def clean(self) -> bool:
        return not (self.lost or self.duplicated or self.misattributed or self.extra)

    def as_dict(self) -> dict[str, Any]:
        return {"expected": self.expected, "lost": self.lost, "duplicated": self.duplicated,
                "misattributed": self.misattributed, "extra": self.extra,
                "examples": self.examples}


def _phone(entity: Mapping[str, Any]) -> str:
    phones = entity.get("phones") or [{}]
    return str(entity.get("phone") or phones[0].get("number", ""))


def compare(golden: Golden, snapshot: Mapping[str, Any]) -> dict[str, Tally]:
    """Per kind, how a portal's snapshot (`/_admin/portals/<name>`) differs from its golden."""
    tid = golden.tenant_id
    tallies = {kind: Tally(expected=n) for kind, n in golden.sizes().items()}

    calls = tallies["calls"]
    got_calls = {c.get("externalId"): (c.get("result"), c.get("userId"), c.get("code"))
                 for c in snapshot["calls"]}
    for call_id, want in golden.calls.items():
        got = got_calls.get(call_id)
        if got is None:
            calls.note("lost", 1, f"{tid}/{call_id}")
        elif got != want:
            calls.note("misattributed", 1, f"{tid}/{call_id} is {got}, not {want}")
    for call_id in set(got_calls) - set(golden.calls):
        calls.note("extra", 1, f"{tid}/{call_id}")

    customers = tallies["customers"]
    by_phone: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for c in snapshot["customers"]:
        by_phone[_phone(c)].append(c)
    for phone, manager in golden.customers.items():
        found = by_phone.get(phone, [])
        if not found:
            customers.note("lost", 1, f"{tid}/{phone}")
        customers.note("duplicated", max(0, len(found) - 1), f"{tid}/{phone} x{len(found)}")
        wrong = [c.get("managerId") for c in found if c.get("managerId") != manager]
        customers.note("misattributed", len(wrong), f"{tid}/{phone} manager {wrong}, "
                                                     f"not {manager}")
    for phone in set(by_phone) - set(golden.customers):
        customers.note("extra", len(by_phone[phone]), f"{tid}/{phone}")
    customer_ids = {c.get("id"): _phone(c) for c in snapshot["customers"]}

    orders = tallies["orders"]
    prefix = f"cs-{tid}-call-"
    orders_by_phone: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for o in snapshot["orders"]:
        orders_by_phone[_phone(o)].append(o)
    for phone, (first_call, manager) in golden.orders.items():
        found = orders_by_phone.get(phone, [])
        if not found:
            orders.note("lost", 1, f"{tid}/{phone} (first call {first_call})")
        orders.note("duplicated", max(0, len(found) - 1), f"{tid}/{phone} x{len(found)}")
        for o in found:
            on_call = str(o.get("externalId", "")).removeprefix(prefix)
            linked = customer_ids.get((o.get("customer") or {}).get("id"))
            if on_call != first_call or o.get("managerId") != manager or linked != phone:
                orders.note("misattributed", 1, f"{tid}/{phone}: on call {on_call} (first "
                            f"{first_call}), manager {o.get('managerId')} (want {manager}), "
                            f"customer of {linked}")
    for phone in set(orders_by_phone) - set(golden.orders):
        orders.note("extra", len(orders_by_phone[phone]), f"{tid}/{phone}")

    tasks = tallies["tasks"]
    tasks_by_call: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for t in snapshot["tasks"]:
        found_call = TASK_CALL.match(str(t.get("commentary") or ""))
        tasks_by_call[found_call.group(1) if found_call else "?"].append(t)
    for call_id, (performer, phone) in golden.tasks.items():
        found = tasks_by_call.get(call_id, [])
        if not found:
            tasks.note("lost", 1, f"{tid}/{call_id}")
        tasks.note("duplicated", max(0, len(found) - 1), f"{tid}/{call_id} x{len(found)}")
        for t in found:
            if (t.get("performerId"), t.get("phone")) != (performer, phone):
                tasks.note("misattributed", 1, f"{tid}/{call_id} for "
                           f"{t.get('performerId')}/{t.get('phone')}, not {performer}/{phone}")
    for call_id in set(tasks_by_call) - set(golden.tasks):
        first = tasks_by_call[call_id][0]
        tasks.note("extra", len(tasks_by_call[call_id]),
                   f"{tid}/{call_id} for {first.get('performerId')}: "
                   f"{str(first.get('commentary'))[:90]!r}")
    return tallies
