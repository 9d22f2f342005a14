"""The HTTP ingest against a real broker: a 202 means the record is on the call topic, keyed
by tenant, as sent; a broker that is not there, or goes away, never gets a 202."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from pipeline.config import IngestSettings, KafkaSettings, Settings, TopicSettings
from pipeline.devtools.localkafka import LocalKafka, free_port
from pipeline.ingest.app import Ingest, make_app
from pipeline.ingest.publisher import kafka_publisher
from pipeline.ingest.tokens import TokenFile
from schemas.call_event import CallEvent
from tests.waiting import wait_until

pytestmark = pytest.mark.kafka

Client = TestClient[web.Request, web.Application]


def event(call_id: str, tenant_id: str = "acme") -> dict[str, Any]:
    return {"call_id": call_id, "tenant_id": tenant_id, "direction": "in",
            "started_at": "2026-11-25T10:03:00+02:00", "client_phone": "+380501112233",
            "status": "no_answer", "wait_seconds": 21, "utm": {"source": "google"},
            "employee": {"id": "emp-17", "extension": "101"}}


async def create_topic(bootstrap: str, name: str, partitions: int = 3) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()


async def read_topic(bootstrap: str, topic: str, count: int) -> list[Any]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    records: list[Any] = []
    try:
        async def enough() -> bool:
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                records.extend(batch)
            return len(records) >= count

        await wait_until(enough, f"{count} records on {topic}", within=30)
    finally:
        await consumer.stop()
    return records


@asynccontextmanager
async def ingest(bootstrap: str, topic: str, tokens: TokenFile,
                 send_timeout: float = 10.0) -> AsyncIterator[Client]:
    settings = Settings(kafka=KafkaSettings(bootstrap_servers=bootstrap),
                        topics=TopicSettings(calls=topic),
                        ingest=IngestSettings(tokens_file=str(tokens.path),
                                              send_timeout_seconds=send_timeout))
    client = TestClient(TestServer(make_app(Ingest(
        settings=settings.ingest, tokens=tokens, publisher=kafka_publisher(settings)))))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


async def is_ready(client: Client) -> bool:
    return (await client.get("/readyz")).status == 200


@pytest.fixture
def tokens(tmp_path: Path) -> Iterator[tuple[TokenFile, str]]:
    file = TokenFile(tmp_path / "tokens.json")
    yield file, file.add("pbx", ["acme", "beta"])


async def test_a_202_means_the_record_is_on_the_call_topic_keyed_by_tenant(
        kafka_bootstrap: str, tokens: tuple[TokenFile, str]) -> None:
    file, token = tokens
    topic = f"t-{uuid.uuid4().hex[:12]}.calls"
    await create_topic(kafka_bootstrap, topic)
    sent = [event("rs-a"), event("rs-b", tenant_id="beta")]
    async with ingest(kafka_bootstrap, topic, file) as client:
        await wait_until(lambda: is_ready(client), "the ingest ready", within=30)
        answer = await client.post("/v1/calls", json=sent,
                                   headers={"Authorization": f"Bearer {token}"})
        assert answer.status == 202, await answer.text()
        assert await answer.json() == {"accepted": 2}
    records = {r.key: r for r in await read_topic(kafka_bootstrap, topic, 2)}
    assert set(records) == {b"acme", b"beta"}
    for body, key in zip(sent, (b"acme", b"beta"), strict=True):
        record = records[key]
        assert json.loads(record.value) == body
        assert CallEvent.model_validate_json(record.value).call_id == body["call_id"]
        assert record.timestamp == int(
            datetime.fromisoformat(body["started_at"]).timestamp() * 1000)


async def test_no_broker_at_all_is_503_and_not_ready(tokens: tuple[TokenFile, str]) -> None:
    file, token = tokens
    async with ingest(f"127.0.0.1:{free_port()}", "callsync.calls", file) as client:
        for _ in range(3):
            answer = await client.post("/v1/calls", json=event("rs-a"),
                                       headers={"Authorization": f"Bearer {token}"})
            assert answer.status == 503
            assert int(answer.headers["Retry-After"]) > 0
        assert not await is_ready(client)


async def test_a_broker_that_goes_away_gets_no_202_and_a_202_survives_it(
        tmp_path: Path, tokens: tuple[TokenFile, str]) -> None:
    file, token = tokens
    auth = {"Authorization": f"Bearer {token}"}
    (tmp_path / "broker").mkdir()
    broker = LocalKafka(data_dir=tmp_path / "broker")
    await asyncio.to_thread(broker.start)
    try:
        topic = "calls"
        await create_topic(broker.bootstrap_servers, topic, partitions=1)
        async with ingest(broker.bootstrap_servers, topic, file, send_timeout=3) as client:
            await wait_until(lambda: is_ready(client), "the ingest ready", within=30)
            assert (await client.post("/v1/calls", json=event("rs-before"),
                                      headers=auth)).status == 202
            broker.kill()  # SIGKILL: a crash, its data kept
            answer = await client.post("/v1/calls", json=event("rs-during"), headers=auth)
            assert answer.status == 503, await answer.text()
            assert not await is_ready(client)
            await asyncio.to_thread(broker.start)
            # The producer finds the broker again by itself.
            await wait_until(lambda: is_ready(client), "the ingest ready again", within=60)
            answer = await client.post("/v1/calls", json=event("rs-after"), headers=auth)
            assert answer.status == 202, await answer.text()
        stored = [json.loads(r.value)["call_id"]
                  for r in await read_topic(broker.bootstrap_servers, topic, 2)]
        # What got a 202 is there; the refused record may or may not be (sending it again is
        # harmless), never the other way round.
        assert {"rs-before", "rs-after"} <= set(stored)
    finally:
        broker.stop()
