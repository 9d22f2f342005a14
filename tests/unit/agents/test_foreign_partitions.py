"""deliver_calls and a record on a partition that is not its tenant's: copied home and settled
there, or handled in place when no copy can be stored (pipeline/delivery/routing.py)."""

from __future__ import annotations

import json
from unittest.mock import AsyncMock

import pytest

import agents.calls
from agents.calls import deliver_calls
from pipeline import runtime
from pipeline.delivery.routing import REROUTED_FROM
from pipeline.streams.tables import tenant_partition
from tests.waiting import wait_until

EVENT = {"call_id": "c1", "tenant_id": "ghost", "started_at": "2026-11-25T10:00:00+02:00",
         "direction": "in", "client_phone": "+380501112233", "status": "answered"}
PARTITIONS = 8


@pytest.fixture
def eight_partitions(monkeypatch: pytest.MonkeyPatch) -> None:
    """`test_context` hands records over on partition 0; with eight, "ghost" lives elsewhere."""
    monkeypatch.setattr(runtime.router, "partitions", PARTITIONS)
    monkeypatch.setattr(runtime.router, "first_delay", 0.001)
    assert tenant_partition("ghost", PARTITIONS) != 0


@pytest.mark.usefixtures("eight_partitions")
async def test_a_record_away_from_home_is_copied_there_and_not_read_here(
        invalid: AsyncMock, monkeypatch: pytest.MonkeyPatch) -> None:
    send = AsyncMock()
    monkeypatch.setattr(runtime.router, "_send", send)
    value = json.dumps(EVENT).encode()
    async with deliver_calls.test_context() as agent:
        await agent.put(key=b"ghost", value=value)
        await wait_until(lambda: send.await_count, "the copy sent", within=10)
    assert send.await_args is not None
    (partition, key, copied, headers, _), _ = send.await_args
    assert (partition, key, copied) == (tenant_partition("ghost", PARTITIONS), b"ghost", value)
    assert headers[0][0] == REROUTED_FROM and headers[0][1].endswith(b"/0/0")
    invalid.assert_not_awaited()  # the copy's reader says unknown_tenant, not this one
    assert agents.calls.gate.commit_points()  # settled here: the offset can be committed


@pytest.mark.usefixtures("eight_partitions")
async def test_a_record_that_cannot_be_copied_is_handled_in_place(
        invalid: AsyncMock, monkeypatch: pytest.MonkeyPatch) -> None:
    send = AsyncMock(side_effect=OSError("not authorized to write to the call topic"))
    monkeypatch.setattr(runtime.router, "_send", send)
    async with deliver_calls.test_context() as agent:
        await agent.put(key=b"ghost", value=json.dumps(EVENT).encode())
        await wait_until(lambda: invalid.await_count, "the record handled in place", within=10)
    assert send.await_count == runtime.router.tries
    assert [c.kwargs["reason"] for c in invalid.await_args_list] == [
        "unknown_tenant: no integration is configured for 'ghost'"]
