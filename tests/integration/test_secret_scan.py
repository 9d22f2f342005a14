"""Every byte callsync writes, scanned for the tenants' keys and the operator's secrets.

One run that activates, revokes, dead-letters, meets a portal that echoes the key, re-activates
with the three-day replay and restarts the worker in JSON log mode; then every topic of the run
(changelogs included: values, keys and headers), both log modes, every HTTP path of the metrics
port and the CLI's output are searched for each secret in raw, URL-encoded and base64 forms.
"""

from __future__ import annotations

import asyncio
import base64
import io
import urllib.error
import urllib.request
from datetime import timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from pipeline.devtools.crmdouble.state import Fault
from pipeline.devtools.samples import sample_calls, sample_tenants
from pipeline.observability.logs import secret_forms
from pipeline.operations.operator import build_command, send_and_follow
from tests.integration.stack import Stack, StackFactory
from tests.integration.support import FAUST_PATHS, new_key

pytestmark = pytest.mark.kafka


async def everything_on(stack: Stack) -> dict[str, list[bytes]]:
    """topic -> every key, value and header value on it, for the topics of this run."""
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.bootstrap)
    await admin.start()
    try:
        names = sorted(t for t in await admin.list_topics() if t.startswith(stack.app_id))
        described = await admin.describe_topics(names)
    finally:
        await admin.close()
    partitions = {d["topic"]: [p["partition"] for p in d["partitions"]] for d in described}
    consumer = AIOKafkaConsumer(bootstrap_servers=stack.bootstrap, enable_auto_commit=False)
    await consumer.start()
    found: dict[str, list[bytes]] = {}
    try:
        for name in names:
            tps = [TopicPartition(name, p) for p in partitions[name]]
            assert tps, f"{name} has no partitions"
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            blobs: list[bytes] = []
            for tp in tps:
                while await consumer.position(tp) < ends[tp]:
                    batch = await consumer.getmany(tp, timeout_ms=1000)
                    for message in batch.get(tp, []):
                        blobs += [message.key or b"", message.value or b""]
                        blobs += [v for _, v in message.headers or []]
            found[name] = blobs
    finally:
        await consumer.stop()
    return found


def http_answers(port: int) -> dict[str, bytes]:
    answers = {}
    for path in ["/metrics", "/healthz", "/readyz", *FAUST_PATHS]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as got:
                answers[path] = got.read()
        except urllib.error.HTTPError as refused:
            answers[path] = refused.read()
    return answers


def hits(secrets: dict[str, str], where: str, blob: bytes) -> list[str]:
    return [f"{name} ({form!r}) in {where}" for name, secret in secrets.items()
            for form in secret_forms(secret) if form.encode() in blob]


async def follow(stack: Stack, out: io.StringIO, kind: str, tenant_id: str,
                 **fields: Any) -> Any:
    command = build_command(kind, tenant_id, operator="scan", **fields)
    result = await send_and_follow(stack.settings, command, follow=300, out=out)
    assert result is not None, stack.worker.log_tail()
    return result


async def test_no_secret_in_any_byte_callsync_writes(make_stack: StackFactory) -> None:
    stack = make_stack(sample_tenants(2))
    await stack.start()
    broken, echoing = stack.tenants
    tid, other = broken.config.tenant_id, echoing.config.tenant_id
    cli = io.StringIO()
    events = sample_calls([t.sample for t in stack.tenants], 60, seed=77,
                          span=timedelta(hours=3))
    await stack.publish_calls(events[:20])
    await stack.wait_done()
    activated = await follow(stack, cli, "activate", tid, **stack.activation(
        broken, broken.config.api_key.get_secret_value()))
    assert activated.status == "done", activated.message

    portal = stack.double.state.portals[tid]
    for key in portal.keys.values():  # revoked: what follows is dead-lettered
        key.active = False
    echo_key = echoing.config.api_key.get_secret_value()
    stack.double.state.faults.append(Fault(
        portal=other, method="/api/telephony/calls/upload", status=400,
        error_msg=f"Validation error: key {echo_key} / {base64.b64encode(echo_key.encode())!r}",
        remaining=3))
    await stack.publish_calls(events[20:40])
    await stack.wait_done()
    assert (await follow(stack, cli, "status", tid)).data["state"] == "broken"

    stack.env["CALLSYNC_LOG_JSON"] = "true"
    stack.restart_worker(kill=False)
    new_key(stack, tid, "scan-rotated-key-7f3a")
    reactivated = await follow(stack, cli, "activate", tid, **stack.activation(
        broken, "scan-rotated-key-7f3a", send_after_reactivation=True))
    assert reactivated.status == "done", reactivated.message
    await stack.publish_calls(events[40:])
    await stack.wait_done()
    for tenant_id in (tid, other):
        await follow(stack, cli, "status", tenant_id)
        await follow(stack, cli, "employees", tenant_id)

    secrets = {"old key": broken.config.api_key.get_secret_value(),
               "new key": "scan-rotated-key-7f3a", "echoed key": echo_key,
               "operator key": stack.env["CALLSYNC_OPERATOR_KEY"]}
    for kek in stack.env["CALLSYNC_SECRETS__KEYS"].split(","):
        secrets[f"key-encryption key {kek.split(':')[0]}"] = kek.split(":", 1)[1]
    found: list[str] = []
    topics = await everything_on(stack)
    assert any("changelog" in name for name in topics), sorted(topics)
    assert len(topics) >= 10, sorted(topics)
    for name, blobs in topics.items():
        found += hits(secrets, f"topic {name}", b"\n".join(blobs))
    log = stack.worker.log_path.read_bytes()
    assert b'"level": "INFO"' in log or b'"level":"INFO"' in log, "the JSON log mode ran"
    assert b"] INFO " in log, "the text log mode ran"
    found += hits(secrets, "the worker log", log)
    for path, body in (await asyncio.to_thread(http_answers, stack.metrics_port)).items():
        found += hits(secrets, f"HTTP {path}", body)
    found += hits(secrets, "the CLI output", cli.getvalue().encode())
    assert found == []
    # and the run did what it says: dead letters, an echo refused, a replay
    dead = topics[stack.settings.topics.dead_letter]
    assert dead and b"InvalidApiKey" in b"\n".join(dead)
    assert b"Validation error: key **********" in b"\n".join(
        topics[stack.settings.topics.invalid])
