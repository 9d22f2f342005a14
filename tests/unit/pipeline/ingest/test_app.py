"""POST /v1/calls in process: a real CallPublisher over a fake producer, real token file."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from pipeline.config import IngestSettings
from pipeline.ingest.app import Ingest, make_app
from pipeline.ingest.publisher import CallPublisher
from pipeline.ingest.tokens import TokenFile
from schemas.call_event import CallEvent
from tests.unit.pipeline.ingest.fakes import FakeProducer
from tests.waiting import wait_until

TOPIC = "callsync.calls"
PHONE = "+380501112233"


def event(**changes: Any) -> dict[str, Any]:
    return {"call_id": "rs-1", "tenant_id": "acme", "started_at": "2026-11-25T10:03:00+02:00",
            "direction": "in", "client_phone": PHONE, "status": "answered",
            "talk_seconds": 30, **changes}


@dataclass
class Rig:
    client: TestClient[web.Request, web.Application]
    producer: FakeProducer
    publisher: CallPublisher
    tokens: TokenFile
    token: str  # producer "alpha": tenants acme, beta

    async def post(self, body: Any, *, token: str | None = None) -> Any:
        headers = {"Authorization": f"Bearer {token or self.token}"}
        return await self.client.post("/v1/calls", json=body, headers=headers)


Factory = Callable[..., Awaitable[Rig]]


@pytest.fixture
async def make_rig(tmp_path: Path) -> AsyncIterator[Factory]:
    clients: list[TestClient[web.Request, web.Application]] = []

    async def make(*, start_failures: int = 0, connected: bool = True) -> Rig:
        tokens = TokenFile(tmp_path / f"tokens-{len(clients)}.json")
        token = tokens.add("alpha", ["acme", "beta"])
        tokens.add("zulu", ["zeta"])
        producer = FakeProducer(topics={TOPIC}, start_failures=start_failures)
        settings = IngestSettings(max_body_bytes=4096, max_events=3, max_in_flight=4,
                                  send_timeout_seconds=5, retry_after_seconds=1)
        publisher = CallPublisher(producer_factory=lambda: producer, topic=TOPIC,
                                  max_in_flight=settings.max_in_flight,
                                  send_timeout=settings.send_timeout_seconds,
                                  retry_after=settings.retry_after_seconds,
                                  reconnect_seconds=0.01)
        client = TestClient(TestServer(make_app(Ingest(settings=settings, tokens=tokens,
                                                       publisher=publisher))))
        await client.start_server()
        clients.append(client)
        if connected:
            await wait_until(lambda: publisher.started, "the producer connected")
        return Rig(client=client, producer=producer, publisher=publisher, tokens=tokens,
                   token=token)

    yield make
    for client in clients:
        await client.close()


@pytest.fixture
async def rig(make_rig: Factory) -> Rig:
    return await make_rig()


async def test_one_event_is_published_keyed_by_tenant_and_stamped_with_its_start(
        rig: Rig) -> None:
    answer = await rig.post(event())
    assert answer.status == 202
    assert await answer.json() == {"accepted": 1}
    [(topic, key, value, timestamp)] = rig.producer.stored
    assert (topic, key) == (TOPIC, b"acme")
    assert value is not None
    # Exactly the bytes the worker will parse, and they say what the producer sent.
    assert CallEvent.model_validate_json(value) == CallEvent.model_validate(event())
    assert json.loads(value) == event()
    assert timestamp == int(datetime.fromisoformat(event()["started_at"]).timestamp() * 1000)


async def test_an_array_is_published_in_order_and_answered_with_its_count(rig: Rig) -> None:
    calls = [event(call_id="a"), event(call_id="b", tenant_id="beta"), event(call_id="c")]
    answer = await rig.post(calls)
    assert answer.status == 202
    assert await answer.json() == {"accepted": 3}
    assert [(k, json.loads(v or b"")["call_id"]) for _, k, v, _ in rig.producer.stored] == [
        (b"acme", "a"), (b"beta", "b"), (b"acme", "c")]


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer ", "Basic YWxhZGRpbjpzZXNhbWU=",
                                    "Bearer csi_wrong", "bearer csi_wrong"])
async def test_no_token_or_a_wrong_one_is_401_and_nothing_is_published(
        rig: Rig, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    answer = await rig.client.post("/v1/calls", json=event(), headers=headers)
    assert answer.status == 401
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    body = await answer.json()
    assert body["error"] == "unauthorized"
    assert rig.producer.stored == []


async def test_a_revoked_token_is_refused_from_the_next_request(rig: Rig) -> None:
    assert (await rig.post(event(call_id="a"))).status == 202
    assert TokenFile(rig.tokens.path).revoke("alpha")  # the CLI, another process
    answer = await rig.post(event(call_id="b"))
    assert answer.status == 401
    assert [json.loads(v or b"")["call_id"] for _, _, v, _ in rig.producer.stored] == ["a"]


async def test_the_same_answer_for_a_missing_and_an_unknown_token(rig: Rig) -> None:
    missing = await rig.client.post("/v1/calls", json=event())
    unknown = await rig.post(event(), token="csi_" + "A" * 43)
    assert (missing.status, await missing.json()) == (unknown.status, await unknown.json())


async def test_an_invalid_event_is_400_with_field_errors_and_none_is_published(
        rig: Rig) -> None:
    bad_phone = "+38050111"
    answer = await rig.post([event(call_id="a"), event(call_id="b", client_phone=bad_phone,
                                                       talk_seconds="12")])
    assert answer.status == 400
    text = await answer.text()
    body = json.loads(text)
    assert body["error"] == "invalid"
    [error] = body["errors"]
    assert error["index"] == 1
    assert {f["field"] for f in error["fields"]} == {"client_phone", "talk_seconds"}
    assert error["reason"].startswith("schema: ")
    assert bad_phone not in text and PHONE not in text  # no input value is echoed
    assert rig.producer.stored == []
    assert rig.publisher.in_flight == 0


@pytest.mark.parametrize(("body", "error"), [
    (b"{not json", "undecodable"), (b"[]", "invalid"), (b"NaN", "undecodable"),
    (b"[" * 1500 + b"]" * 1500, "undecodable"), (b"5", "invalid"),
    (b'{"tenant_id": "acme"}', "invalid")])
async def test_a_body_that_is_no_event_is_400(rig: Rig, body: bytes, error: str) -> None:
    answer = await rig.client.post("/v1/calls", data=body, headers={
        "Authorization": f"Bearer {rig.token}", "Content-Type": "application/json"})
    assert answer.status == 400
    assert (await answer.json())["error"] == error
    assert rig.producer.stored == []


async def test_a_tenant_outside_the_tokens_scope_is_403_naming_it(rig: Rig) -> None:
    answer = await rig.post([event(call_id="a"), event(call_id="b", tenant_id="zeta")])
    assert answer.status == 403
    body = await answer.json()
    assert (body["error"], body["tenants"]) == ("forbidden_tenant", ["zeta"])
    assert "zeta" in body["message"]
    assert rig.producer.stored == []  # not even the event of its own tenant


async def test_size_caps_are_413(rig: Rig) -> None:
    too_many = await rig.post([event(call_id=f"c{i}") for i in range(4)])
    assert too_many.status == 413
    assert "at most 3" in (await too_many.json())["message"]
    too_long = await rig.post(event(ga_client_id="x" * 5000))  # over 4096 bytes
    assert too_long.status == 413

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: aiohttp counts
        yield b'{"call_id": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}'

    chunked = await rig.client.post("/v1/calls", data=chunks(), headers={
        "Authorization": f"Bearer {rig.token}", "Content-Type": "application/json"})
    assert chunked.status == 413
    assert rig.producer.stored == []


async def test_another_content_type_is_415(rig: Rig) -> None:
    answer = await rig.client.post("/v1/calls", data=json.dumps(event()), headers={
        "Authorization": f"Bearer {rig.token}", "Content-Type": "text/plain"})
    assert answer.status == 415
    assert rig.producer.stored == []


async def test_over_the_in_flight_bound_is_429_until_the_brokers_catch_up(rig: Rig) -> None:
    rig.producer.mode = "hold"
    first = asyncio.create_task(rig.post([event(call_id=c) for c in "abc"]))
    await wait_until(lambda: rig.publisher.in_flight == 3, "three records in flight")
    busy = await rig.post([event(call_id="d"), event(call_id="e")])
    assert busy.status == 429
    assert busy.headers["Retry-After"] == "1"
    assert (await busy.json())["error"] == "busy"
    assert not first.done()  # no answer while its records await the brokers
    assert rig.producer.release() == 3
    assert (await first).status == 202
    rig.producer.mode = "ack"
    assert (await rig.post([event(call_id="d"), event(call_id="e")])).status == 202
    assert rig.publisher.in_flight == 0
    assert len(rig.producer.stored) == 5


async def test_a_refused_record_is_503_never_202(rig: Rig) -> None:
    rig.producer.modes = ["ack", "fail", "ack"]
    answer = await rig.post([event(call_id=c) for c in "abc"])
    assert answer.status == 503
    assert answer.headers["Retry-After"] == "5"
    assert (await answer.json())["error"] == "unavailable"
    assert len(rig.producer.stored) == 2  # the others may be stored: sending again is harmless
    rig.producer.mode = "raise"  # send() itself refuses
    answer = await rig.post(event(call_id="d"))
    assert answer.status == 503
    assert rig.publisher.in_flight == 0


async def test_a_record_not_acknowledged_in_time_is_503_and_still_counts_in_flight(
        rig: Rig) -> None:
    rig.publisher.send_timeout = 0.2
    rig.producer.mode = "hold"
    answer = await rig.post([event(call_id="a"), event(call_id="b")])
    assert answer.status == 503
    assert "not acknowledged within 0.2 s" in (await answer.json())["message"]
    assert rig.producer.stored == []
    # Still in the producer's buffer: it holds its slot until the producer settles it.
    assert rig.publisher.in_flight == 2
    rig.producer.mode = "ack"
    assert (await rig.post([event(call_id=c) for c in "cde"])).status == 429
    rig.producer.release(fail=True)
    await wait_until(lambda: rig.publisher.in_flight == 0, "the held records settled")
    assert (await rig.post([event(call_id=c) for c in "cde"])).status == 202


async def test_before_the_producer_connects_it_is_503_and_not_ready(make_rig: Factory) -> None:
    rig = await make_rig(start_failures=1_000_000, connected=False)
    await wait_until(lambda: rig.producer.starts >= 2, "a second connection attempt")
    answer = await rig.post(event())
    assert answer.status == 503
    assert answer.headers["Retry-After"] == "5"
    ready = await rig.client.get("/readyz")
    assert ready.status == 503
    assert (await ready.json())["ready"] is False
    assert (await rig.client.get("/healthz")).status == 200


async def test_it_connects_after_failed_attempts_and_is_ready(make_rig: Factory) -> None:
    rig = await make_rig(start_failures=3, connected=False)
    await wait_until(lambda: rig.publisher.started, "connected on the fourth attempt")
    assert (await rig.client.get("/readyz")).status == 200
    assert (await rig.post(event())).status == 202
    rig.producer.unreachable = True
    assert (await rig.client.get("/readyz")).status == 503
    rig.producer.topics = set()
    rig.producer.unreachable = False
    assert "topic" in (await (await rig.client.get("/readyz")).json())["reason"]


async def test_no_token_or_phone_number_in_logs_answers_or_metrics(
        rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "csi_" + "W" * 43
    texts = []
    for body, token in ((event(), rig.token), (event(), wrong),
                        (event(client_phone="+3805011122"), rig.token),
                        (event(tenant_id="zeta"), rig.token)):
        texts.append(await (await rig.post(body, token=token)).text())
    rig.producer.mode = "fail"
    texts.append(await (await rig.post(event(), token=rig.token)).text())
    metrics = await (await rig.client.get("/metrics")).text()
    assert 'callsync_ingest_requests_total{outcome="unauthorized"}' in metrics
    assert 'callsync_ingest_events_accepted_total{producer="alpha"}' in metrics
    everything = "\n".join([*texts, metrics, caplog.text])
    for secret in (rig.token, wrong, rig.token[4:], PHONE, "+3805011122", "3805011122"):
        assert secret not in everything
