"""Hostile records: each ends on the invalid topic with its reason, and the agent goes on."""

from __future__ import annotations

import json
from typing import Any
from unittest.mock import AsyncMock

import pytest

import agents.calls
from agents.calls import deliver_calls
from agents.tenants import store_integrations
from pipeline.delivery.outlets import MAX_COPY_BYTES, Headers, TopicOutlets
from pipeline.delivery.work import SourceRef

EVENT = {"call_id": "c1", "tenant_id": "ghost", "started_at": "2026-11-25T10:00:00+02:00",
         "direction": "in", "client_phone": "+380501112233", "status": "answered"}
CONFIG = {"tenant_id": "acme", "portal_url": "https://acme.retailcrm.ru",
          "admin_email": "admin@acme.example.com", "site_code": "main",
          "api_key": "k-secret-123456", "timezone": "Mars/Olympus"}


def reasons(edge: AsyncMock) -> list[str]:
    return [str(call.kwargs["reason"]) for call in edge.await_args_list]


@pytest.mark.parametrize("year", ["9999", "0001", "0999"])
async def test_a_year_out_of_range_is_a_schema_error(invalid: AsyncMock, year: str) -> None:
    event = {**EVENT, "started_at": f"{year}-11-25T10:00:00+02:00"}
    async with deliver_calls.test_context() as agent:
        await agent.put(key=b"ghost", value=json.dumps(event).encode())
    assert reasons(invalid)[0].startswith("schema: started_at")


async def test_a_record_without_a_key_is_a_key_mismatch(invalid: AsyncMock) -> None:
    async with deliver_calls.test_context() as agent:
        await agent.put(key=None, value=json.dumps(EVENT).encode())
    assert reasons(invalid)[0].startswith("key_mismatch: the record has no key")


async def test_a_record_that_breaks_callsync_lands_with_internal_and_the_agent_goes_on(
        invalid: AsyncMock, monkeypatch: pytest.MonkeyPatch) -> None:
    real = agents.calls.accept_call  # type: ignore[attr-defined]
    calls = [0]

    async def breaks_once(**kwargs: Any) -> None:
        calls[0] += 1
        if calls[0] == 1:
            raise OverflowError("date value out of range")
        await real(**kwargs)

    monkeypatch.setattr(agents.calls, "accept_call", breaks_once)
    async with deliver_calls.test_context() as agent:
        await agent.put(key=b"ghost", value=json.dumps(EVENT).encode())
        await agent.put(key=b"ghost", value=json.dumps(EVENT).encode())
    assert reasons(invalid) == ["internal:OverflowError",
                                "unknown_tenant: no integration is configured for 'ghost'"]


async def test_a_record_without_a_value_lands_with_its_reason(invalid: AsyncMock) -> None:
    async with deliver_calls.test_context() as agent:
        await agent.put(key=b"ghost", value=b"")
    assert reasons(invalid) == ["undecodable: the record has no value"]


async def test_a_config_with_a_key_that_is_not_utf8_is_refused_without_its_api_key(
        invalid: AsyncMock) -> None:
    async with store_integrations.test_context() as agent:
        await agent.put(key=b"\xff\xfe", value=json.dumps({**CONFIG, "timezone": "UTC"}
                                                           ).encode())
    [call] = invalid.await_args_list
    assert call.kwargs["reason"] == "key_mismatch: the record key is not UTF-8"
    assert b"k-secret-123456" not in call.kwargs["raw"]
    assert json.loads(call.kwargs["raw"])["api_key"] == "[redacted]"


async def test_an_invalid_config_is_copied_without_its_api_key(invalid: AsyncMock) -> None:
    async with store_integrations.test_context() as agent:
        await agent.put(key=b"acme", value=json.dumps(CONFIG).encode())
        await agent.put(key=b"acme", value=b"api_key=k-secret-123456 not json")
    copies = [call.kwargs["raw"] for call in invalid.await_args_list]
    assert len(copies) == 2 and all(b"k-secret-123456" not in c for c in copies)


async def test_a_tenant_record_nested_too_deep_to_copy_lands_and_the_agent_goes_on(
        invalid: AsyncMock) -> None:
    """Its copy (the API key redacted at any depth) cannot be walked: a digest stands for it,
    and the next record is read."""
    def nested(depth: int) -> bytes:
        return b'{"api_key": "k-secret-123456", "a": ' + b"[" * depth + b"]" * depth + b"}"

    async with store_integrations.test_context() as agent:
        await agent.put(key=b"acme", value=nested(600))  # read, but too deep to copy
        await agent.put(key=b"acme", value=nested(50_000))  # too deep to read
        await agent.put(key=b"\xff", value=json.dumps(CONFIG).encode())
    assert reasons(invalid) == ["unsigned: the record is not signed by the control desk",
                                "undecodable: the record is nested too deep to read",
                                "key_mismatch: the record key is not UTF-8"]
    for call in invalid.await_args_list[:2]:
        assert b"k-secret-123456" not in call.kwargs["raw"]
        assert "sha256" in json.loads(call.kwargs["raw"])


async def test_a_copy_too_large_for_the_producer_is_cut_and_says_so() -> None:
    sent: list[tuple[bytes | None, bytes, Headers]] = []

    async def send(key: bytes | None, value: bytes, headers: Headers) -> None:
        sent.append((key, value, headers))

    outlets = TopicOutlets(send_invalid=send, send_dead_letter=send)
    huge = b'{"call_id": "' + b"x" * 1_048_576 + b'"}'
    await outlets.invalid(raw=huge, key=b"k" * 5000, source=SourceRef("calls", 3, 41),
                          reason="schema: call_id: too long", tenant_id=None)
    [(key, value, headers)] = sent
    found = dict(headers)
    assert len(value) == MAX_COPY_BYTES and value == huge[:MAX_COPY_BYTES]
    assert found["callsync-truncated-value"] == str(len(huge)).encode()
    assert found["callsync-truncated-key"] == b"5000" and key is not None and len(key) == 1024
    assert found["callsync-source-partition"] == b"3" and found["callsync-source-offset"] == b"41"
    assert found["callsync-reason"] == b"schema: call_id: too long"
