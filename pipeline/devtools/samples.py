"""Realistic sample call traffic: answered and missed calls, repeat callers, tenants, UTM sets."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = ["SampleTenant", "sample_calls", "sample_tenants"]

UTM_SETS: tuple[dict[str, str], ...] = (
    {"source": "google", "medium": "cpc", "campaign": "brand", "term": "buy sofa"},
    {"source": "facebook", "medium": "social", "campaign": "autumn-sale", "content": "video-2"},
    {"source": "newsletter", "medium": "email", "campaign": "weekly"},
    {},
)
STATUS_WEIGHTS = (("answered", 55), ("no_answer", 25), ("busy", 10), ("cancelled", 6),
                  ("failed", 4))


@dataclass(frozen=True)
class SampleTenant:
    tenant_id: str
    timezone: str
    country_prefix: str  # for client numbers: +38050 (UA), +48501 (PL), …
    phone_digits: int  # digits after '+', country code included
    tracking_numbers: tuple[str, ...]
    employees: tuple[tuple[str, str], ...]  # (employee id, extension)


def sample_tenants(count: int = 3) -> list[SampleTenant]:
    base = [
        SampleTenant("acme", "Europe/Kyiv", "+38050", 12,
                     ("+380443334400", "+380443334401"),
                     (("emp-1", "101"), ("emp-2", "102"), ("emp-3", "103"), ("emp-9", "109"))),
        SampleTenant("globex", "Europe/Warsaw", "+48501", 11,
                     ("+48223334400",), (("g-1", "201"), ("g-2", "202"), ("g-7", "207"))),
        SampleTenant("initech", "Europe/Moscow", "+7916", 11,
                     ("+74953334400", "+74953334401"), (("i-1", "301"), ("i-5", "305"))),
    ]
    extra = [SampleTenant(f"tenant-{n}", "Europe/Kyiv", "+38067", 12, ("+380443334499",),
                          ((f"t{n}-1", "401"), (f"t{n}-2", "402"))) for n in range(4, count + 1)]
    return (base + extra)[:count]


def _phone(tenant: SampleTenant, rand: random.Random) -> str:
    digits = tenant.phone_digits - (len(tenant.country_prefix) - 1)
    return tenant.country_prefix + "".join(str(rand.randint(0, 9)) for _ in range(digits))


def sample_calls(tenants: list[SampleTenant], count: int, *, seed: int = 7,
                 end: datetime | None = None, span: timedelta = timedelta(hours=6),
                 repeat_share: float = 0.3, fresh_share: float = 0.0) -> list[dict[str, Any]]:
    """`count` ended calls spread over `span` before `end`, in time order, as JSON-ready dicts;
    `fresh_share` of them started within the last 20 seconds (their pop-ups are still due)."""
    rand = random.Random(seed)  # noqa: S311 - sample data
    end = end or datetime.now(UTC)
    callers: dict[str, list[str]] = {t.tenant_id: [] for t in tenants}
    fresh = int(count * fresh_share)
    starts = sorted([end - span * rand.random() for _ in range(count - fresh)]
                    + [end - timedelta(seconds=20 * rand.random()) for _ in range(fresh)])
    statuses = [s for s, _ in STATUS_WEIGHTS]
    weights = [w for _, w in STATUS_WEIGHTS]
    calls = []
    for n, started in enumerate(starts):
        tenant = rand.choice(tenants)
        known = callers[tenant.tenant_id]
        if known and rand.random() < repeat_share:
            phone = rand.choice(known)
        else:
            phone = _phone(tenant, rand)
            known.append(phone)
        status = rand.choices(statuses, weights)[0]
        answered = status == "answered"
        employee_id, extension = rand.choice(tenant.employees)
        outbound = answered and rand.random() < 0.1
        call: dict[str, Any] = {
            "call_id": f"{tenant.tenant_id}-{seed}-{n:06d}",
            "tenant_id": tenant.tenant_id,
            "started_at": started.isoformat(),
            "direction": "out" if outbound else "in",
            "client_phone": phone,
            "tracking_number": rand.choice(tenant.tracking_numbers),
            "employee": {"id": employee_id, "extension": extension}
            if answered or rand.random() < 0.5 else None,
            "status": status,
            "talk_seconds": (rand.randint(20, 600) if started < end - timedelta(minutes=15)
                             else rand.randint(1, 5)) if answered else 0,
            "wait_seconds": rand.randint(1, 40) if started < end - timedelta(minutes=15)
            else rand.randint(1, 5),
            "recording_url": f"https://records.example.com/{tenant.tenant_id}/{n}.mp3"
            if answered else None,
            "utm": rand.choice(UTM_SETS),
            "ga_client_id": f"GA1.2.{rand.randint(10**8, 10**9)}.{rand.randint(10**8, 10**9)}",
        }
        calls.append({k: v for k, v in call.items() if v is not None})
    return calls
