"""The tenant agents take only desk-signed records; the rest goes invalid, without the key."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest.mock import AsyncMock

import pytest

from agents.tenants import store_integrations, store_mappings
from pipeline import runtime
from pipeline.app import integrations, mappings
from tests.unit.trust import KEYRING, config_record, signed

KEY = "k-secret-7654321"


@pytest.fixture
def tenant() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"


def config(tenant: str, **changes: Any) -> dict[str, Any]:
    return {"tenant_id": tenant, "portal_url": f"https://{tenant}.retailcrm.ru",
            "admin_email": "admin@acme.example.com", "site_code": "main", "api_key": KEY,
            **changes}


def refusals(edge: AsyncMock) -> list[tuple[str, bytes]]:
    return [(str(c.kwargs["reason"]), bytes(c.kwargs["raw"])) for c in edge.await_args_list]


async def stored(tenant: str) -> None:
    async with store_integrations.test_context() as agent:
        await agent.put(key=tenant.encode(), value=signed("integration",
                                                          config_record(config(tenant))))


@pytest.mark.parametrize(("value", "reason"), [
    (lambda t: json.dumps(config(t, portal_url="https://evil.example.com")).encode(),
     "unsigned: "),
    (lambda t: signed("integration", config_record(config(
        t, portal_url="https://evil.example.com")), key=b"not the record key"),
     "bad_signature: "),
    (lambda t: b"", "unsigned: a tombstone"),
    (lambda t: signed("mapping", {"tenant_id": t}), "wrong_kind: "),
])
async def test_an_unverified_record_changes_nothing(invalid: AsyncMock, tenant: str,
                                                    value: Any, reason: str) -> None:
    await stored(tenant)
    before = integrations[tenant]
    async with store_integrations.test_context() as agent:
        await agent.put(key=tenant.encode(), value=value(tenant))
    [(why, copy)] = refusals(invalid)
    assert why.startswith(reason) and KEY.encode() not in copy
    assert integrations[tenant] == before
    found = runtime.directory.config(tenant)
    assert found is not None and str(found.portal_url) == f"https://{tenant}.retailcrm.ru/"


async def test_another_tenants_envelope_does_not_open_even_when_signed(
        invalid: AsyncMock, tenant: str) -> None:
    victim = config_record(config("victim"))
    copied = {**config(tenant, portal_url="https://victim.retailcrm.ru"),
              "api_key": victim["api_key"]}
    async with store_integrations.test_context() as agent:
        await agent.put(key=tenant.encode(), value=signed("integration", copied))
    [(why, copy)] = refusals(invalid)
    assert why.startswith("undecryptable: ") and tenant not in integrations
    assert json.loads(copy)["body"]["record"]["api_key"] == "[redacted]"


async def test_an_older_signed_record_is_stale(invalid: AsyncMock, tenant: str) -> None:
    now = datetime.now(UTC)
    older = signed("integration", config_record(config(tenant, site_code="old")),
                   signed_at=now - timedelta(hours=1))
    async with store_integrations.test_context() as agent:
        await agent.put(key=tenant.encode(), value=signed(
            "integration", config_record(config(tenant)), signed_at=now))
        await agent.put(key=tenant.encode(), value=older)
    [(why, _)] = refusals(invalid)
    assert why.startswith("stale: ")
    found = runtime.directory.config(tenant)
    assert found is not None and found.site_code == "main"


async def test_a_signed_mapping_is_kept_and_an_unsigned_one_refused(invalid: AsyncMock,
                                                                    tenant: str) -> None:
    async with store_mappings.test_context() as agent:
        await agent.put(key=tenant.encode(), value=signed(
            "mapping", {"tenant_id": tenant, "senior_manager_id": 28}))
        await agent.put(key=tenant.encode(), value=json.dumps(
            {"tenant_id": tenant, "senior_manager_id": 666}).encode())
    [(why, _)] = refusals(invalid)
    assert why.startswith("unsigned: ")
    assert runtime.directory.stored_mapping(tenant).senior_manager_id == 28
    assert tenant in mappings


async def test_a_record_under_an_unknown_key_id_is_refused(invalid: AsyncMock,
                                                           tenant: str) -> None:
    other = config_record(config(tenant), keyring=type(KEYRING)([("k9", b"9" * 32)]))
    async with store_integrations.test_context() as agent:
        await agent.put(key=tenant.encode(), value=signed("integration", other))
    [(why, _)] = refusals(invalid)
    assert why.startswith("undecryptable: ") and "'k9'" in why
