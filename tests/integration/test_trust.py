"""Trust end to end: unsigned records and replays change nothing, set-up is signed, no key leaks."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import pytest

from pipeline.devtools.crmdouble.state import Fault
from pipeline.devtools.devstack import seed_tenant, settings_from
from pipeline.devtools.samples import sample_calls, sample_tenants
from pipeline.operations.operator import build_command, rekey_all, send_and_follow
from pipeline.signing import open_record, record_key, seal_record, sign
from pipeline.streams.producing import Record, publish
from tests.integration.stack import OPERATOR_KEY, Stack, StackFactory
from tests.integration.support import actual_state, expected_state, same
from tests.waiting import wait_until

pytestmark = pytest.mark.kafka


def headers_of(message: Any) -> dict[str, str]:
    return {k: v.decode(errors="replace") for k, v in message.headers}


async def refusals_from(stack: Stack, topics: set[str], count: int,
                        within: float = 60) -> list[Any]:
    """The invalid topic's copies of records that came from `topics`, once there are `count`."""
    found: list[Any] = []

    async def enough() -> list[Any] | None:
        found[:] = [m for m in await stack.read_topic(stack.settings.topics.invalid)
                    if headers_of(m).get("callsync-source-topic") in topics]
        return found if len(found) >= count else None

    return await wait_until(enough, f"{count} refusals on the invalid topic", within=within,
                            every=1.0,
                            detail=lambda: f"{len(found)} so far\n{stack.worker.log_tail()}")


def leaks(messages: list[Any], secrets: list[str]) -> list[str]:
    return [secret for m in messages for secret in secrets
            for text in (m.value or b"", *(v for _, v in m.headers))
            if secret.encode() in text or quote(secret, safe="").encode() in text]


async def test_unsigned_and_forged_tenant_records_change_nothing(
        make_stack: StackFactory) -> None:
    stack = make_stack(sample_tenants(2))
    await stack.start()
    a, b = stack.tenants
    ta = a.config.tenant_id
    a_key, b_key = (t.config.api_key.get_secret_value() for t in (a, b))
    events = sample_calls([t.sample for t in stack.tenants], 160, seed=41,
                          span=timedelta(hours=2))
    await stack.publish_calls(events[:80])
    await stack.wait_done()

    keyring = stack.settings.secrets.keyring()
    assert keyring is not None
    plain = {**a.config.model_dump(mode="json")}
    repoint = {**plain, "portal_url": str(b.config.portal_url), "api_key": b_key}
    forged = seal_record("integration", {**repoint, "api_key": keyring.encrypt(
        b_key, tenant_id=ta)}, record_key(b"not the operator key"),
        signed_at=datetime.now(UTC) + timedelta(days=1))
    newcomer = {**plain, "tenant_id": "evil", "api_key": a_key}  # another tenant's portal
    integrations: list[Record] = [
        (ta.encode(), json.dumps(repoint).encode(), None),
        (ta.encode(), json.dumps(forged).encode(), None),
        (b"evil", json.dumps(newcomer).encode(), None),
        (ta.encode(), None, None),  # a tombstone
    ]
    await publish(stack.bootstrap, stack.settings.topics.integrations, integrations)
    await publish(stack.bootstrap, stack.settings.topics.mappings, [
        (ta.encode(), json.dumps({"tenant_id": ta, "senior_manager_id": 999}).encode(), None)])
    topics = {stack.settings.topics.integrations, stack.settings.topics.mappings}
    refused = await refusals_from(stack, topics, 5)
    reasons = sorted(headers_of(m)["callsync-reason"].split(":")[0] for m in refused)
    assert reasons == ["bad_signature", "unsigned", "unsigned", "unsigned", "unsigned"]
    assert leaks(refused, [a_key, b_key]) == []

    evil_calls = [{**e, "tenant_id": "evil", "call_id": "evil-" + e["call_id"]}
                  for e in events[80:] if e["tenant_id"] == ta][:5]
    await stack.publish_calls(events[80:] + evil_calls)
    await stack.wait_done()
    for tenant in (a, b):  # every call in its own portal, none in the other
        assert same(actual_state(stack, tenant.config.tenant_id),
                    expected_state(events, tenant))
    invalid = await stack.read_topic(stack.settings.topics.invalid)
    unknown = {json.loads(m.value)["call_id"] for m in invalid
               if headers_of(m)["callsync-reason"].startswith("unknown_tenant")}
    assert unknown == {e["call_id"] for e in evil_calls}
    status = await stack.command("status", ta)
    assert status.data["config"]["portal_url"] == str(a.config.portal_url)
    assert status.data["mapped_employees"] == len(a.mapping.employees)


async def test_a_replayed_command_changes_nothing_after_101_others_and_a_restart(
        make_stack: StackFactory) -> None:
    stack = make_stack(sample_tenants(1))
    await stack.start()
    tenant = stack.tenants[0]
    tid = tenant.config.tenant_id
    key = tenant.config.api_key.get_secret_value()
    captured = build_command("deactivate", tid, operator="e2e", reason="captured")

    async def send(command: dict[str, Any]) -> Any:
        result = await send_and_follow(stack.settings, command, follow=120, out=io.StringIO())
        assert result is not None, stack.worker.log_tail()
        return result

    assert (await send(captured)).status == "done"
    assert (await stack.command("activate", tid, **stack.activation(tenant, key))).status \
        == "done"
    others = [build_command("rekey", tid, operator="e2e") for _ in range(100)]
    await publish(stack.bootstrap, stack.settings.topics.control, [
        (tid.encode(), json.dumps({"command": c, "signature": sign(
            c, OPERATOR_KEY.encode())}).encode(), None) for c in others])
    ids = {c["command_id"] for c in others}

    async def all_done() -> bool:
        answered = {m.key.decode() for m in await stack.read_topic(
            stack.settings.topics.results) if m.key and json.loads(m.value)["status"] == "done"}
        return ids <= answered

    await wait_until(all_done, "every other command done", within=90, every=1.0,
                     detail=stack.worker.log_tail)

    replayed = await send(captured)
    assert replayed.message.startswith("already handled"), replayed.message
    assert (await stack.command("status", tid)).data["state"] == "active"
    stack.restart_worker(kill=False)
    replayed = await send(captured)
    assert replayed.message.startswith("already handled"), replayed.message
    assert (await stack.command("status", tid)).data["state"] == "active"

    events = sample_calls([tenant.sample], 30, seed=43, span=timedelta(hours=1))
    await stack.publish_calls(events)
    await stack.wait_done()
    assert same(actual_state(stack, tid), expected_state(events, tenant))


async def test_a_new_tenant_set_up_with_signed_commands_only_gets_its_first_call(
        make_stack: StackFactory) -> None:
    first, second = sample_tenants(2)
    stack = make_stack([first])
    await stack.start()
    new = seed_tenant(stack.double.state, stack.double_url, second, 1)  # nothing published
    tid = new.config.tenant_id
    key = new.config.api_key.get_secret_value()

    refused = await stack.command("activate", tid, **stack.activation(new, key))
    assert refused.status == "refused" and "senior manager" in refused.message
    activated = await stack.command("activate", tid, **stack.activation(
        new, key, senior_manager_id=new.senior_manager_id))
    assert activated.status == "done", activated.message
    for employee, link in new.mapping.employees.items():
        linked = await stack.command("link", tid, employee_id=employee,
                                     extension=link.extension, crm_user_id=link.crm_user_id)
        assert linked.status == "done", linked.message

    events = sample_calls([new.sample], 12, seed=44, span=timedelta(hours=1))
    await stack.publish_calls(events)
    await stack.wait_done()
    assert same(actual_state(stack, tid), expected_state(events, new))

    desk = record_key(OPERATOR_KEY.encode())
    written = [m for m in await stack.read_topic(stack.settings.topics.integrations)
               if m.key == tid.encode()]
    assert written and all(key.encode() not in m.value for m in written)
    open_record(json.loads(written[-1].value), kind="integration", key=desk)
    mappings = [m for m in await stack.read_topic(stack.settings.topics.mappings)
                if m.key == tid.encode()]
    body = open_record(json.loads(mappings[-1].value), kind="mapping", key=desk)
    assert body.record["senior_manager_id"] == new.senior_manager_id
    assert len(body.record["employees"]) == len(new.mapping.employees)


async def test_a_portal_that_echoes_the_key_gets_it_into_no_topic_and_no_result(
        make_stack: StackFactory) -> None:
    stack = make_stack(sample_tenants(1))
    await stack.start()
    tenant = stack.tenants[0]
    tid = tenant.config.tenant_id
    key = tenant.config.api_key.get_secret_value()
    echo = f"Validation error: {key} ({quote(key, safe='')}) may not upload"
    stack.double.state.faults.append(Fault(portal=tid, method="/api/telephony/calls/upload",
                                           status=400, error_msg=echo))
    events = sample_calls([tenant.sample], 10, seed=45, span=timedelta(hours=1))
    await stack.publish_calls(events)
    await stack.wait_done()
    invalid = await stack.read_topic(stack.settings.topics.invalid)
    rejected = [m for m in invalid if "may not upload" in headers_of(m)["callsync-reason"]]
    assert rejected, "the uploads were refused with the portal's text"
    assert leaks(invalid, [key]) == []
    assert leaks(await stack.read_topic(stack.settings.topics.dead_letter), [key]) == []

    stack.double.state.faults[:] = [Fault(portal=tid, method="/api/credentials", status=400,
                                          error_msg=f"Validation error: key {key}")]
    result = await stack.command("activate", tid, **stack.activation(tenant, key))
    assert result.status == "failed" and "Validation error" in result.message
    assert key not in result.model_dump_json()
    assert leaks(await stack.read_topic(stack.settings.topics.results), [key]) == []
    assert key not in stack.worker.log_tail(10_000)


async def test_a_rotation_rekeys_every_tenant_and_then_the_old_key_can_go(
        make_stack: StackFactory) -> None:
    old, new = (f"{kid}:{base64.b64encode(os.urandom(32)).decode()}" for kid in ("old", "new"))
    stack = make_stack(sample_tenants(2), extra_env={"CALLSYNC_SECRETS__KEYS": old})
    await stack.start()
    by_desk = stack.tenants[0]  # the other is only published, as devstack does
    activated = await stack.command("activate", by_desk.config.tenant_id, **stack.activation(
        by_desk, by_desk.config.api_key.get_secret_value()))
    assert activated.status == "done", activated.message

    def rotate(keys: str) -> None:
        stack.env["CALLSYNC_SECRETS__KEYS"] = keys
        stack.settings = settings_from(stack.env)
        stack.restart_worker(kill=False)

    rotate(f"{new},{old}")
    assert await asyncio.to_thread(rekey_all, stack.settings, follow=120) == 0
    rotate(new)
    events = sample_calls([t.sample for t in stack.tenants], 40, seed=46,
                          span=timedelta(hours=1))
    await stack.publish_calls(events)
    await stack.wait_done()
    for tenant in stack.tenants:
        assert same(actual_state(stack, tenant.config.tenant_id),
                    expected_state(events, tenant))
        status = await stack.command("status", tenant.config.tenant_id)
        assert status.data["key_id"] == "new"
