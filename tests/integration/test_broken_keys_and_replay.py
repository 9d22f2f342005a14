"""Broken keys, the dead-letter topic, operator commands and the three-day replay, end to end."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from pipeline.devtools.crmdouble.state import ApiKey, Fault
from pipeline.devtools.samples import sample_calls, sample_tenants
from pipeline.operations.operator import build_command, send_and_follow
from pipeline.operations.window import calendar_days_window
from pipeline.signing import sign
from schemas.control import CommandResult
from tests.integration.stack import StackFactory
from tests.integration.support import actual_state, calls_reach, expected_state, new_key, same
from tests.waiting import wait_until

pytestmark = pytest.mark.kafka


def dead_letters_of(records: list[Any], tenant_id: str) -> dict[str, dict[str, str]]:
    found = {}
    for m in records:
        headers = {k: v.decode() for k, v in m.headers}
        if headers["callsync-tenant"] == tenant_id:
            found[headers["callsync-call-id"]] = headers
    return found


async def test_a_revoked_key_parks_one_tenant_and_reactivation_replays_without_duplicates(
        make_stack: StackFactory) -> None:
    stack = make_stack(sample_tenants(3))
    await stack.start()
    events = sample_calls([t.sample for t in stack.tenants], 1000, seed=21,
                          span=timedelta(hours=5))
    broken = stack.tenants[0]
    tid = broken.config.tenant_id
    portal = stack.double.state.portals[tid]
    await stack.publish_calls(events[:400])
    await calls_reach(portal, 60)  # revoke while the tenant's calls are flowing
    old_label = next(iter(portal.keys.values())).label
    for key in portal.keys.values():
        key.active = False
    delivered_before = len(portal.calls)
    await stack.publish_calls(events[400:])
    await stack.wait_done()

    dead_key_requests = stack.double.state.requests[(tid, old_label)].get(403, 0)
    assert 1 <= dead_key_requests <= 3
    assert delivered_before < len([e for e in events if e["tenant_id"] == tid])
    dead = dead_letters_of(await stack.read_topic(stack.settings.topics.dead_letter), tid)
    own = [e["call_id"] for e in events if e["tenant_id"] == tid]
    assert set(portal.calls) | set(dead) >= set(own), "every call delivered or dead-lettered"
    assert all(h["callsync-broken"] == "1" and h["callsync-reason"] == "InvalidApiKey"
               for h in dead.values())
    for other in stack.tenants[1:]:
        assert same(actual_state(stack, other.config.tenant_id),
                    expected_state(events, other)), "other tenants are unaffected"
    status = await stack.command("status", tid)
    assert status.data["state"] == "broken" and status.data["parked"] == len(dead)

    new_key(stack, tid, "rotated-key-1")
    modules = set(portal.modules)
    fields = stack.activation(broken, "rotated-key-1", send_after_reactivation=True)
    del fields["timezone"], fields["module_code"]  # a new key changes nothing else
    result = await stack.command("activate", tid, follow=300, **fields)
    assert result.status == "done", result.message
    assert result.data["remaining"] == 0 and result.data["settled"] == result.data["submitted"]
    await stack.wait_done()
    assert same(actual_state(stack, tid), expected_state(events, broken))
    status = await stack.command("status", tid)
    assert status.data["state"] == "active" and status.data["parked"] == 0
    assert status.data["replay"]["done"] is True
    kept = {k: v for k, v in broken.config.model_dump(mode="json").items() if k != "api_key"}
    assert status.data["config"] == kept, "re-activation kept the zone, module and options"
    assert set(portal.modules) == modules and portal.modules[broken.config.module_code]["active"]


async def test_the_replay_window_is_today_and_two_days_before(make_stack: StackFactory) -> None:
    sample = sample_tenants(1)[0]
    stack = make_stack([sample])
    await stack.start()
    tenant = stack.tenants[0]
    tid = tenant.config.tenant_id
    deactivated = await stack.command("deactivate", tid)
    assert deactivated.status == "done"
    now = datetime.now(UTC)
    window = calendar_days_window(now, tenant.config.zone)
    stamps = {
        "four-days": now - timedelta(days=4), "three-days": now - timedelta(days=3),
        "just-before": window.start - timedelta(minutes=1),
        "just-after": window.start + timedelta(minutes=1),
        "one-day": now - timedelta(days=1), "today": now - timedelta(minutes=30),
    }
    base = sample_calls([sample], len(stamps), seed=5)
    events = [{**e, "call_id": f"w-{name}", "started_at": at.isoformat(),
               "direction": "out", "status": "answered"}
              for e, (name, at) in zip(base, stamps.items(), strict=True)]
    await stack.publish_calls(events)
    await stack.wait_done()
    portal = stack.double.state.portals[tid]
    assert portal.calls == {}, "a deactivated tenant gets nothing"
    assert portal.modules[tenant.config.module_code]["active"] is False

    result = await stack.command("activate", tid, follow=120, **stack.activation(
        tenant, tenant.config.api_key.get_secret_value(), send_after_reactivation=True))
    assert result.status == "done", result.message
    assert sorted(portal.calls) == ["w-just-after", "w-one-day", "w-today"]


async def test_forged_malformed_and_repeated_commands(make_stack: StackFactory) -> None:
    stack = make_stack(sample_tenants(1))
    await stack.start()
    tenant = stack.tenants[0]
    tid = tenant.config.tenant_id
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap)
    await producer.start()
    forged = {"type": "deactivate", "command_id": "forged-1", "tenant_id": tid,
              "issued_at": datetime.now(UTC).isoformat()}
    stale = {**forged, "command_id": "stale-1",
             "issued_at": (datetime.now(UTC) - timedelta(days=2)).isoformat()}
    try:
        for body in (
            {"command": forged, "signature": sign(forged, b"not the operator key")},
            {"command": stale, "signature": sign(stale, b"e2e-operator-signing-key")},
            {"command": {**forged, "command_id": "bad-1", "type": "explode"},
             "signature": sign({**forged, "command_id": "bad-1", "type": "explode"},
                               b"e2e-operator-signing-key")},
        ):
            await producer.send_and_wait(stack.settings.topics.control,
                                         json.dumps(body).encode(), key=tid.encode())
        await producer.send_and_wait(stack.settings.topics.control, b"{not json",
                                     key=tid.encode())
    finally:
        await producer.stop()

    async def answered() -> dict[str, Any] | None:
        results = {m.key.decode(): json.loads(m.value)
                   for m in await stack.read_topic(stack.settings.topics.results)}
        return results if {"forged-1", "stale-1", "bad-1", "unknown"} <= set(results) else None

    results = await wait_until(answered, "answers to the four bad commands", within=60,
                               every=0.2, detail=stack.worker.log_tail)
    assert results["forged-1"]["status"] == "refused"
    assert results["forged-1"]["message"] == "bad signature"
    assert results["stale-1"]["status"] == "refused" and "too old" in results["stale-1"][
        "message"]
    assert results["bad-1"]["status"] == "refused" and "type" in results["bad-1"]["message"]
    assert results["unknown"]["status"] == "refused"
    status = await stack.command("status", tid)
    assert status.data["state"] == "active", "nothing changed"

    command_fields = stack.activation(tenant, "wrong-key")
    first = await stack.command("activate", tid, **command_fields)
    assert first.status == "refused" and "Wrong \"apiKey\" value." in first.message
    assert "wrong-key" not in first.model_dump_json()

    # the same command id twice: answered again, carried out once
    command = build_command("deactivate", tid, operator="e2e", reason="maintenance")
    edits_before = stack.double.state.requests.get((tid, tid), {}).get(200, 0)
    once = await send_and_follow(stack.settings, command, follow=60, out=io.StringIO())
    twice = await send_and_follow(stack.settings, command, follow=60, out=io.StringIO())
    assert once is not None and twice is not None
    assert once.status == twice.status == "done"
    assert twice.message.startswith("already handled")
    assert stack.double.state.requests[(tid, tid)][200] == edits_before + 1


async def test_activation_refuses_a_key_without_the_sixteen_methods(
        make_stack: StackFactory) -> None:
    stack = make_stack(sample_tenants(1))
    await stack.start()
    tenant = stack.tenants[0]
    portal = stack.double.state.portals[tenant.config.tenant_id]
    full = next(iter(portal.keys.values()))
    portal.keys["narrow"] = ApiKey("narrow", full.methods - {"/api/tasks/create",
                                                             "/api/user-groups"}, "narrow")
    result = await stack.command("activate", tenant.config.tenant_id,
                                 **stack.activation(tenant, "narrow"))
    assert result.status == "refused"
    assert "/api/tasks/create" in result.message and "/api/user-groups" in result.message
    assert "2 of the 16" in result.message


async def test_a_worker_killed_during_a_replay_resumes_it_without_duplicates(
        make_stack: StackFactory) -> None:
    sample = sample_tenants(1)[0]
    stack = make_stack([sample])
    await stack.start()
    tenant = stack.tenants[0]
    tid = tenant.config.tenant_id
    assert (await stack.command("deactivate", tid)).status == "done"
    events = sample_calls([sample], 160, seed=8, span=timedelta(hours=3))
    await stack.publish_calls(events)
    await stack.wait_done()
    portal = stack.double.state.portals[tid]
    assert portal.calls == {}

    accepted = await stack.command("activate", tid, follow=5, **stack.activation(
        tenant, tenant.config.api_key.get_secret_value(), send_after_reactivation=True))
    assert accepted.status in ("accepted", "progress")
    await calls_reach(portal, 30)
    assert 30 <= len(portal.calls) < 160, "kill it in the middle of the replay"
    stack.restart_worker(kill=True)

    async def replay_done() -> bool:
        return bool((await stack.command("status", tid)).data["replay"]["done"])

    await wait_until(replay_done, "the resumed replay to finish", within=600, every=0.5,
                     detail=stack.worker.log_tail)
    assert same(actual_state(stack, tid), expected_state(events, tenant))


async def test_a_portal_outage_parks_its_tenant_and_what_it_parked_is_replayed_by_itself(
        make_stack: StackFactory) -> None:
    stack = make_stack(sample_tenants(3), extra_env={
        "CALLSYNC_OUTAGE_PROBE_SECONDS": "1", "CALLSYNC_CRM__MAX_ATTEMPTS": "3",
        "CALLSYNC_CRM__BACKOFF_BASE_SECONDS": "0.05"})
    await stack.start()
    events = sample_calls([t.sample for t in stack.tenants], 600, seed=31,
                          span=timedelta(hours=4))
    down = stack.tenants[0]
    tid = down.config.tenant_id
    portal = stack.double.state.portals[tid]
    await stack.publish_calls(events[:200])
    await calls_reach(portal, 30)  # the portal goes down while its calls are flowing
    stack.double.state.faults.append(Fault(portal=tid, status=502))
    await stack.publish_calls(events[200:])
    await stack.wait_done()  # every offset committed: delivered, or parked while down

    own = [e["call_id"] for e in events if e["tenant_id"] == tid]
    assert len(portal.calls) < len(own)
    dead = dead_letters_of(await stack.read_topic(stack.settings.topics.dead_letter), tid)
    assert set(portal.calls) | set(dead) >= set(own), "every call delivered or dead-lettered"
    assert all(h["callsync-reason"].startswith("RetriesExhausted:") for h in dead.values())
    status = await stack.command("status", tid)
    assert status.data["state"] == "broken", status.data
    assert status.data["parked"] == len(dead) and status.data["outage_offsets"]
    for other in stack.tenants[1:]:
        assert same(actual_state(stack, other.config.tenant_id),
                    expected_state(events, other)), "other tenants are unaffected"

    stack.double.state.faults.clear()  # the portal is back: nobody has to do anything

    async def recovered() -> CommandResult | None:
        status = await stack.command("status", tid)
        replay = status.data["replay"]
        return status if status.data["state"] == "active" and replay and replay["done"] \
            else None

    status = await wait_until(recovered, "the outage replay to finish", within=120, every=0.5,
                              detail=stack.worker.log_tail)
    replay = status.data["replay"]
    assert replay["command_id"].startswith("outage-")
    assert status.data["reason"] == "the portal answers again after an outage"
    assert status.data["parked"] == 0 and status.data["outage_offsets"] == {}
    assert same(actual_state(stack, tid), expected_state(events, down)), "no loss, no duplicate"
