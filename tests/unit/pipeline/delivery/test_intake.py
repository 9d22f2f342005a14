"""A call record's way in, in process: bad input to the invalid topic, good input to its lane."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import cast

import pytest

from pipeline.delivery.intake import MAX_CALL_RECORD_BYTES, accept_call, divert
from pipeline.delivery.lanes import LaneRegistry
from pipeline.delivery.work import SourceRef
from pipeline.streams.offsets import OffsetGate
from tests.unit.pipeline.fakes import Lanes, Outlets
from tests.unit.pipeline.operations.desk import Portal, Worker
from tests.unit.pipeline.operations.fakekafka import call_json

NOW = datetime(2024, 3, 13, 10, 0, tzinfo=UTC)
SOURCE = SourceRef("calls", 2, 41)


class Intake:
    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.lanes = Lanes()
        self.outlets = Outlets()
        self.acks = 0

    def ack(self) -> None:
        self.acks += 1

    async def accept(self, raw: bytes | None, key: bytes | None) -> None:
        await accept_call(raw=raw, key=key, source=SOURCE, ack=self.ack,
                          directory=self.worker.directory,
                          lanes=cast(LaneRegistry, self.lanes), outlets=self.outlets)


@pytest.fixture
async def intake() -> Intake:
    worker = Worker(Portal(), clock=[NOW])
    await worker.set_up()
    return Intake(worker)


GOOD = call_json("c1", NOW - timedelta(hours=1))


@pytest.mark.parametrize(("raw", "key", "reason", "tenant"), [
    (None, b"acme", "undecodable: the record has no value", None),
    (b"", b"acme", "undecodable: the record has no value", None),
    (b"\xff{not json", b"acme", "undecodable: ", None),
    (b'{"call_id": "x1", "tenant_id": "acme"}', b"acme", "schema: ", None),
    (GOOD, None, "key_mismatch: the record has no key", "acme"),
    (GOOD, b"globex", "key_mismatch: the record key (6 bytes) is not tenant_id 'acme'", "acme"),
    (GOOD, b"380501112233", "key_mismatch: the record key (12 bytes) is not tenant_id 'acme'",
     "acme"),
    (call_json("c1", NOW, tenant_id="ghost"), b"ghost",
     "unknown_tenant: no integration is configured for 'ghost'", "ghost"),
    (GOOD[:-1] + b" " * MAX_CALL_RECORD_BYTES + b"}", b"acme",
     f"too_large: the record is {len(GOOD) + MAX_CALL_RECORD_BYTES} bytes; a call event is at "
     f"most {MAX_CALL_RECORD_BYTES}", None),
])
async def test_bad_input_goes_to_the_invalid_topic_with_its_reason_and_is_settled(
        intake: Intake, raw: bytes | None, key: bytes | None, reason: str,
        tenant: str | None) -> None:
    await intake.accept(raw, key)
    [copy] = intake.outlets.invalids
    assert copy["reason"].startswith(reason), copy["reason"]
    assert (copy["raw"], copy["key"], copy["source"], copy["tenant_id"]) == (
        raw, key, SOURCE, tenant)
    assert intake.acks == 1 and intake.lanes.lane.works == []


async def test_a_good_record_goes_to_its_tenant_s_lane_unsettled_with_its_lease(
        intake: Intake) -> None:
    lease = OffsetGate().read("calls", 2, 41, generation=1, stamp=0.0)
    intake.lanes.lane.holding = True
    await accept_call(raw=GOOD, key=b"acme", source=SOURCE, ack=intake.ack,
                      directory=intake.worker.directory,
                      lanes=cast(LaneRegistry, intake.lanes), outlets=intake.outlets,
                      lease=lease)
    [work] = intake.lanes.lane.works
    assert (work.event.call_id, work.plan.tenant_id, work.raw, work.key, work.source) == (
        "c1", "acme", GOOD, b"acme", SOURCE)
    assert work.lease is lease and work.plan.upload is not None
    assert intake.acks == 0, "settled by the lane once its outcome is durable"
    work.ack()
    assert intake.acks == 1 and intake.outlets.invalids == []


async def test_a_call_of_an_unlinked_employee_is_counted_as_a_fallback(
        intake: Intake) -> None:
    await intake.accept(GOOD, b"acme")
    assert intake.worker.directory.fallbacks == {"acme": {"emp-1": "not linked to a CRM manager"}}
    [work] = intake.lanes.lane.works
    assert work.plan.upload is not None and work.plan.upload.userId is None
    assert work.plan.upload.code == "101", "the extension goes instead"


async def test_divert_tries_until_the_copy_is_stored_then_settles() -> None:
    outlets = Outlets()
    outlets.failing = 2
    settled: list[bool] = []
    await divert(outlets, raw=b"x", key=b"acme", source=SOURCE, reason="internal:KeyError",
                 tenant_id="acme", ack=lambda: settled.append(True), first_delay=0.001,
                 max_delay=0.002)
    assert outlets.failing == 0 and [c["reason"] for c in outlets.invalids] == [
        "internal:KeyError"]
    assert settled == [True]


async def test_an_employee_linked_to_no_manager_is_reported_to_the_lane_s_diagnosis(
        intake: Intake) -> None:
    await intake.accept(GOOD, b"acme")  # emp-1 (ext 101): the desk's mapping links nobody
    diagnosis = intake.lanes.lane.diagnosis
    [problem] = diagnosis.reported
    assert (problem.kind, problem.subject) == ("unmapped_extension", "101")
    assert diagnosis.senior_manager_id == 28 and "not linked" in problem.commentary
