"""A replay keeps the tenant's order: live events wait for it, and it reads on to them.

In process: the real broker and the retailCRM double, a lane registry and the replay manager,
no worker process.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from pipeline.config import CRMSettings
from pipeline.crm.client import RetailCRMClient
from pipeline.delivery.lanes import LaneRegistry
from pipeline.delivery.ledger import MemoryLedger
from pipeline.delivery.planning import plan_call
from pipeline.delivery.tenantstate import StateStore
from pipeline.delivery.work import SourceRef, Work
from pipeline.devtools.crmdouble.server import CRMDouble
from pipeline.devtools.crmdouble.state import Portal
from pipeline.operations.replay import ReplayManager
from pipeline.operations.window import ReplayWindow
from pipeline.streams.offsets import OffsetGate
from schemas import CallEvent, EmployeeLink, EmployeeMapping, IntegrationConfig
from schemas.control import CommandResult
from schemas.crm import IntegrationModulePayload, Integrations, TelephonyConfiguration
from tests.integration.support import RecordingOutlets

pytestmark = pytest.mark.kafka

NOW = datetime.now(UTC)
PHONE = "+380501234567"
MAPPING = EmployeeMapping(tenant_id="acme", senior_manager_id=28,
                          employees={"emp-1": EmployeeLink(crm_user_id=27, extension="101")})


def call(n: int, status: str) -> CallEvent:
    return CallEvent.model_validate({
        "call_id": f"c{n}", "tenant_id": "acme", "direction": "in", "client_phone": PHONE,
        "started_at": (NOW - timedelta(minutes=30 - n)).isoformat(), "status": status,
        "employee": {"id": "emp-1", "extension": "101"},
        "talk_seconds": 30 if status == "answered" else 0})


class Directory:
    def __init__(self, config: IntegrationConfig) -> None:
        self._config = config

    def config(self, tenant_id: str) -> IntegrationConfig:
        return self._config

    def mapping(self, tenant_id: str) -> EmployeeMapping:
        return MAPPING

    def note_fallback(self, event: CallEvent, mapping: EmployeeMapping) -> str | None:
        return None  # every employee of these calls is linked


async def test_a_live_event_waits_for_the_replay_so_the_first_call_makes_the_lead(
        kafka_bootstrap: str, topic_name: str, crm_double: CRMDouble, portal: Portal) -> None:
    config = IntegrationConfig.model_validate({
        "tenant_id": "acme", "portal_url": crm_double.portal_url("acme"),
        "admin_email": "admin@acme.example.com", "site_code": "main", "api_key": "acme-key",
        "timezone": "Europe/Kyiv"})
    async with RetailCRMClient(base_url=crm_double.portal_url("acme"),
                               api_key="acme-key") as crm:
        await crm.edit_integration_module(IntegrationModulePayload(
            code="ringostat-rs", integrationCode="ringostat", active=True,
            integrations=Integrations(telephony=TelephonyConfiguration())))
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic_name, 1, 1)])
    await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    first, second, third = call(1, "no_answer"), call(2, "no_answer"), call(3, "answered")
    for event in (first, second):  # parked while the key was broken
        await producer.send_and_wait(topic_name, event.model_dump_json().encode(), key=b"acme")

    states = StateStore({})
    outlets = RecordingOutlets()
    lanes = LaneRegistry(settings=CRMSettings(upload_linger_seconds=0.05),
                         ledger=MemoryLedger(), outlets=outlets, states=states)
    results: list[CommandResult] = []

    async def report(result: CommandResult) -> None:
        results.append(result)

    replays = ReplayManager(bootstrap_servers=kafka_bootstrap, calls_topic=topic_name,
                            directory=Directory(config), lanes=lanes,  # type: ignore[arg-type]
                            states=states, report=report)
    lanes.recovery = replays
    try:
        await replays.start("acme", "r1", ReplayWindow(NOW - timedelta(days=1), NOW))
        # The caller's third call arrives live right after the re-activation, before the
        # replay has delivered the first two.
        sent = await producer.send_and_wait(topic_name, third.model_dump_json().encode(),
                                            key=b"acme")
        gate = OffsetGate()
        lease = gate.read(topic_name, 0, sent.offset, generation=1, stamp=0.0)
        live = Work(event=third, plan=plan_call(third, config, MAPPING),
                    raw=third.model_dump_json().encode(), key=b"acme",
                    source=SourceRef(topic_name, 0, sent.offset), ack=lease.settle,
                    lease=lease)
        await lanes.lane_for(config).submit(live)
        await asyncio.wait_for(replays.running["acme"], 60)
    finally:
        await producer.stop()
        await lanes.stop()

    assert lease.settled, "the live event was settled: the replay took it over"
    [order] = portal.orders.values()
    assert order["externalId"] == "cs-acme-call-c1", "the first call made the lead"
    assert sorted(portal.calls) == ["c1", "c2", "c3"]
    [customer] = portal.customers.values()
    assert customer["managerId"] == 27
    progress = states.get("acme").replay
    assert progress is not None and progress.done
    assert progress.ends == {"0": 2} and progress.reach == {"0": 3}
    assert results[-1].status == "done" and outlets.dead == [] and outlets.rejected == []
    # the held-back call was delivered once, by the replay, after the two before it
    assert [r.data.get("submitted") for r in results if r.status == "done"] == [3]
