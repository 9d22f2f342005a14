"""The agents in Faust's test context, one AsyncMock per outbound edge."""

from __future__ import annotations

import json
from unittest.mock import AsyncMock

from agents.calls import deliver_calls
from agents.tenants import store_integrations
from pipeline import runtime
from tests.unit.trust import config_record, signed

CONFIG = {"tenant_id": "acme", "portal_url": "https://acme.retailcrm.ru",
          "admin_email": "admin@acme.example.com", "site_code": "main", "api_key": "k-123456",
          "timezone": "Europe/Kyiv"}


async def test_deliver_calls_puts_an_undecodable_record_on_the_invalid_topic(
        invalid: AsyncMock) -> None:
    async with deliver_calls.test_context() as agent:
        await agent.put(key=b"acme", value=b"\xff not json")
    invalid.assert_awaited_once()
    assert invalid.await_args is not None
    assert invalid.await_args.kwargs["reason"].startswith("undecodable")
    assert invalid.await_args.kwargs["raw"] == b"\xff not json"


async def test_deliver_calls_refuses_a_call_of_an_unknown_tenant(invalid: AsyncMock) -> None:
    event = {"call_id": "c1", "tenant_id": "ghost", "started_at": "2026-11-25T10:00:00+02:00",
             "direction": "in", "client_phone": "+380501112233", "status": "answered"}
    async with deliver_calls.test_context() as agent:
        await agent.put(key=b"ghost", value=json.dumps(event).encode())
    assert invalid.await_args is not None
    assert invalid.await_args.kwargs["reason"].startswith("unknown_tenant")
    assert invalid.await_args.kwargs["tenant_id"] == "ghost"


async def test_store_integrations_refuses_a_bad_config_without_echoing_the_key(
        invalid: AsyncMock) -> None:
    bad = config_record({**CONFIG, "timezone": "Mars/Olympus"})
    async with store_integrations.test_context() as agent:
        await agent.put(key=b"acme", value=signed("integration", bad))
    assert invalid.await_args is not None
    reason = invalid.await_args.kwargs["reason"]
    assert reason.startswith("schema: timezone") and "k-123456" not in reason


async def test_store_integrations_keeps_a_valid_config(invalid: AsyncMock) -> None:
    async with store_integrations.test_context() as agent:
        await agent.put(key=b"acme", value=signed("integration", config_record(CONFIG)))
    invalid.assert_not_awaited()
    config = runtime.directory.config("acme")
    assert config is not None and config.api_key.get_secret_value() == "k-123456"
