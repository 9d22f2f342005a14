"""Helpers the integration tests share: the CRM state a run must reach, fakes, waits."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline.crm.client import RetailCRMClient
from pipeline.delivery.errorpolicy import DeadLetter
from pipeline.delivery.work import SourceRef, Work
from pipeline.devtools.crmdouble.server import CRMDouble
from pipeline.devtools.crmdouble.state import ApiKey, Portal
from pipeline.devtools.devstack import DevTenant
from schemas import CallEvent
from schemas.crm import (
    AdditionalCode,
    IntegrationModulePayload,
    Integrations,
    TelephonyConfiguration,
)
from tests.integration.stack import Stack
from tests.waiting import wait_until

__all__ = ["FAUST_PATHS", "MODULE", "Expected", "RecordingOutlets", "actual_state", "calls_reach",
           "client", "expected_state", "new_key", "same"]

# Faust's default web views (faust/web/base.py and faust/web/apps/): tables would show every
# tenant's configuration, the API key included.
FAUST_PATHS = ["/", "/router/", "/router/integrations/", "/router/integrations/get/acme/",
               "/table/", "/table/integrations/", "/table/integrations/acme/",
               "/table/integrations/acme", "/table/ledger/", "/graph/", "/stats/",
               "/performance/", "/metrics/", "/healthz/x", "/readyz/../table/integrations/"]


RESULT = {"answered": "answered", "no_answer": "no answer", "busy": "busy",
          "failed": "failed", "cancelled": "no answer"}


@dataclass
class Expected:
    calls: dict[str, tuple[str, int | None, str | None]] = field(default_factory=dict)
    customers: dict[str, int] = field(default_factory=dict)  # phone -> manager
    order_phones: list[str] = field(default_factory=list)
    tasks: list[tuple[int, str]] = field(default_factory=list)  # performer, phone


def expected_state(events: list[dict[str, Any]], tenant: DevTenant) -> Expected:
    """What the CRM must hold, restated from the product rules, not from the pipeline's code."""
    links = {emp: link.crm_user_id for emp, link in tenant.mapping.employees.items()}
    want = Expected()
    for e in events:
        if e["tenant_id"] != tenant.config.tenant_id:
            continue
        employee = e.get("employee") or {}
        mapped = links.get(employee.get("id", ""))
        code = employee.get("extension") if mapped is None else None
        want.calls[e["call_id"]] = (RESULT[e["status"]], mapped, code)
        if e["direction"] != "in":
            continue
        phone = e["client_phone"]
        if phone not in want.customers:  # a new lead: customer and order
            want.customers[phone] = mapped or tenant.senior_manager_id
            want.order_phones.append(phone)
        if e["status"] != "answered":  # a missed call: the customer's manager calls back
            want.tasks.append((want.customers[phone], phone))
    return want


def actual_state(stack: Stack, tenant_id: str) -> Expected:
    portal = stack.double.state.portals[tenant_id]
    got = Expected()
    got.calls = {c["externalId"]: (c["result"], c.get("userId"), c.get("code"))
                 for c in portal.calls.values()}
    got.customers = {c["phones"][0]["number"]: c["managerId"] for c in portal.customers.values()}
    got.order_phones = [o["phone"] for o in portal.orders.values()]
    got.tasks = [(t["performerId"], t["phone"]) for t in portal.tasks.values()]
    return got


class Same:
    """Whether two CRM states are equal; falsy with a readable account of what differs."""

    def __init__(self, a: Expected, b: Expected) -> None:
        self.differences: list[str] = []
        for name in ("calls", "customers"):
            left, right = getattr(a, name), getattr(b, name)
            for key in sorted(set(left) | set(right)):
                if left.get(key) != right.get(key):
                    self.differences.append(f"{name}[{key}]: {left.get(key)} != {right.get(key)}")
        for name in ("order_phones", "tasks"):
            left, right = Counter(getattr(a, name)), Counter(getattr(b, name))
            if left != right:
                self.differences.append(
                    f"{name}: only in the first {sorted((left - right).elements())}, "
                    f"only in the second {sorted((right - left).elements())}")

    def __bool__(self) -> bool:
        return not self.differences

    def __repr__(self) -> str:
        return "same" if self else "; ".join(self.differences[:20])


def same(a: Expected, b: Expected) -> Same:
    return Same(a, b)


class RecordingOutlets:
    """The invalid and dead-letter topics, as lists."""

    def __init__(self) -> None:
        self.rejected: list[tuple[str, str]] = []
        self.dead: list[tuple[str, list[DeadLetter]]] = []

    async def invalid(self, *, raw: bytes | None, key: bytes | None, source: SourceRef,
                      reason: str, tenant_id: str | None) -> None:
        self.rejected.append((CallEvent.model_validate_json(raw or b"").call_id, reason))

    async def dead_letter(self, work: Work, actions: Sequence[DeadLetter]) -> None:
        self.dead.append((work.plan.call_id, list(actions)))



async def calls_reach(portal: Portal, count: int, within: float = 30) -> None:
    """Wait until the portal holds `count` calls; fail if it never does."""
    await wait_until(lambda: len(portal.calls) >= count,
                     f"{count} calls in the portal {portal.name}", within=within,
                     detail=lambda: f"it holds {len(portal.calls)}")


def new_key(stack: Stack, tenant_id: str, key: str) -> None:
    portal = stack.double.state.portals[tenant_id]
    old = next(iter(portal.keys.values()))
    portal.keys[key] = ApiKey(key, set(old.methods), label=f"{tenant_id}-new")


# -- the client against the double ---------------------------------------------------------------

MODULE = IntegrationModulePayload(
    code="ringostat-acme", integrationCode="ringostat", active=True, name="Ringostat",
    integrations=Integrations(telephony=TelephonyConfiguration(
        inputEventSupported=True, hangupEventSupported=True,
        additionalCodes=[AdditionalCode(userId=27, code="101")])))


def client(double: CRMDouble, key: str = "acme-key", portal: str = "acme") -> RetailCRMClient:
    return RetailCRMClient(base_url=double.portal_url(portal), api_key=key)
