"""The double's memory: portals, their keys, users and the entities the API creates."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from pipeline.crm.methods import (
    BATCH_METHODS,
    CALLBACK_METHODS,
    REQUIRED_METHODS,
    TELEPHONY_UPLOAD_METHODS,
)

__all__ = ["ALL_METHODS", "ApiKey", "DoubleState", "Fault", "Portal"]

ALL_METHODS: tuple[str, ...] = (*REQUIRED_METHODS, *TELEPHONY_UPLOAD_METHODS,
                                *CALLBACK_METHODS, *BATCH_METHODS)
DEFAULT_ORDER_METHODS = ("phone", "missed-call", "call-request", "shopping-cart", "one-click")
DEFAULT_STATUS_GROUPS: dict[str, dict[str, Any]] = {
    "new": {"name": "New", "code": "new", "active": True, "ordering": 10, "process": False,
            "statuses": ["new"]},
    "approval": {"name": "Approval", "code": "approval", "active": True, "ordering": 20,
                 "process": True, "statuses": ["availability-confirmed", "offer-analog"]},
    "complete": {"name": "Complete", "code": "complete", "active": True, "ordering": 60,
                 "process": False, "statuses": ["complete"]},
    "cancel": {"name": "Cancel", "code": "cancel", "active": True, "ordering": 70,
               "process": False, "statuses": ["cancel-other"]},
}
SCOPE_OF = {
    "users": "user", "user-groups": "user", "telephony": "telephony", "customers": "customer",
    "orders": "order", "tasks": "task", "reference": "reference",
    "integration-modules": "integration",
}


@dataclass
class ApiKey:
    key: str
    methods: set[str]
    label: str
    active: bool = True

    def scopes(self) -> list[str]:
        found = {SCOPE_OF[m.split("/")[2]] for m in self.methods if m.split("/")[2] in SCOPE_OF}
        return sorted(f"{s}_{rw}" for s in found for rw in ("read", "write"))


@dataclass
class Fault:
    """An injected misbehaviour: answer `status` (with `error_msg`), add `latency`, or drop.

    The hostile kinds shape the answer instead: `malformed` (`{"success": true}` and nothing
    else), `huge_bytes` (a 200 answer that long, chunked), `drip_seconds` (the answer sent a few
    bytes at a time over that long). With `apply_first` the request is carried out (a write is
    made) before the fault takes effect: `latency` then delays the real answer, `status`,
    `disconnect`, `malformed` and `huge_bytes` replace it — an answer lost after the write.
    A dripped answer is always the real one (or the malformed or huge one it shapes).
    """

    portal: str | None = None
    method: str | None = None
    status: int | None = None
    error_msg: str | None = None
    latency: float = 0.0
    disconnect: bool = False
    remaining: int | None = None  # None: until cleared
    apply_first: bool = False
    malformed: bool = False
    huge_bytes: int = 0
    drip_seconds: float = 0.0

    @property
    def replaces_answer(self) -> bool:
        return self.status is not None or self.disconnect or self.malformed or \
            self.huge_bytes > 0

    def matches(self, portal: str, method: str) -> bool:
        return (self.portal in (None, portal)) and (self.method in (None, method))


@dataclass
class Portal:
    name: str
    timezone: str = "Europe/Moscow"
    sites: dict[str, str] = field(default_factory=lambda: {"main": "Main shop"})
    keys: dict[str, ApiKey] = field(default_factory=dict)
    users: dict[int, dict[str, Any]] = field(default_factory=dict)
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    status_groups: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {k: dict(v) for k, v in DEFAULT_STATUS_GROUPS.items()})
    order_methods: set[str] = field(default_factory=lambda: set(DEFAULT_ORDER_METHODS))
    customers: dict[int, dict[str, Any]] = field(default_factory=dict)
    orders: dict[int, dict[str, Any]] = field(default_factory=dict)
    tasks: dict[int, dict[str, Any]] = field(default_factory=dict)
    task_edits: list[dict[str, Any]] = field(default_factory=list)  # each tasks/{id}/edit's task
    calls: dict[str, dict[str, Any]] = field(default_factory=dict)
    call_events: list[dict[str, Any]] = field(default_factory=list)
    modules: dict[str, dict[str, Any]] = field(default_factory=dict)
    status_changes: list[dict[str, Any]] = field(default_factory=list)
    extensions: dict[int, list[str]] = field(default_factory=dict)  # from module additionalCodes
    last_id: int = 0

    def next_id(self) -> int:
        self.last_id += 1
        return self.last_id

    def reserve_id(self, given: int) -> int:
        """Take an id chosen by the caller; later automatic ids never collide with it."""
        self.last_id = max(self.last_id, given)
        return given

    def now(self) -> str:
        return datetime.now(ZoneInfo(self.timezone)).strftime("%Y-%m-%d %H:%M:%S")

    def telephony_enabled(self) -> bool:
        return any(m.get("active") and not m.get("freeze")
                   and (m.get("integrations") or {}).get("telephony") is not None
                   for m in self.modules.values())

    def customer_by_external_id(self, external_id: str) -> dict[str, Any] | None:
        return next((c for c in self.customers.values() if c.get("externalId") == external_id),
                    None)

    def order_by_external_id(self, external_id: str) -> dict[str, Any] | None:
        return next((o for o in self.orders.values() if o.get("externalId") == external_id), None)

    def customers_by_phone(self, phone: str) -> list[dict[str, Any]]:
        digits = _digits(phone)
        return [c for c in self.customers.values()
                if digits and any(_digits(p.get("number", "")) == digits
                                  for p in c.get("phones", []))]

    def snapshot(self) -> dict[str, Any]:
        """Everything an end-to-end test compares; keys are shown by label only."""
        return {
            "name": self.name, "timezone": self.timezone, "sites": self.sites,
            "keys": [{"label": k.label, "active": k.active, "methods": sorted(k.methods)}
                     for k in self.keys.values()],
            "users": list(self.users.values()), "groups": list(self.groups.values()),
            "customers": list(self.customers.values()), "orders": list(self.orders.values()),
            "tasks": list(self.tasks.values()), "calls": list(self.calls.values()),
            "call_events": self.call_events, "modules": list(self.modules.values()),
            "status_changes": self.status_changes,
        }


def _digits(value: str) -> str:
    return "".join(ch for ch in value if ch.isdigit())


@dataclass
class DoubleState:
    portals: dict[str, Portal] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    # (portal, key label) -> {status: count}; rate-limit windows per (key, class).
    requests: dict[tuple[str, str], dict[int, int]] = field(default_factory=dict)
    windows: dict[tuple[str, str], deque[float]] = field(default_factory=dict)
    by_method: dict[tuple[str, str], int] = field(default_factory=dict)  # (portal, method)
    clock: Callable[[], float] = time.monotonic  # the rate-limit windows' (a test moves it)

    def key_lookup(self, portal: Portal, key: str) -> ApiKey | None:
        return portal.keys.get(key)

    def count(self, portal: str, label: str, status: int) -> None:
        per = self.requests.setdefault((portal, label), {})
        per[status] = per.get(status, 0) + 1

    def take_fault(self, portal: str, method: str) -> Fault | None:
        for fault in self.faults:
            if fault.matches(portal, method):
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self.faults.remove(fault)
                return fault
        return None

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for (portal, label), per in self.requests.items():
            entry = out.setdefault(portal, {"requests": 0, "by_status": {}, "by_key": {}})
            n = sum(per.values())
            entry["requests"] += n
            entry["by_key"][label] = dict(per)
            for status, c in per.items():
                entry["by_status"][str(status)] = entry["by_status"].get(str(status), 0) + c
        return out
