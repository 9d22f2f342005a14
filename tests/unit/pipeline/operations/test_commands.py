"""The control desk's gate and every command: what it refuses, what it carries out once."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from pipeline.delivery.errorpolicy import DeadLetter, Reason
from pipeline.delivery.tenantstate import ReplayProgress
from pipeline.operations.operator import build_command
from pipeline.operations.window import calendar_days_window
from pipeline.signing import sign
from tests.unit.pipeline.operations.desk import KEY, SENIOR, Portal, Worker
from tests.unit.trust import OPERATOR_KEY

KYIV = ZoneInfo("Europe/Kyiv")
# A fixed moment, so the windows the desk computes are known here independently.
NOON = datetime(2024, 3, 13, 10, 0, tzinfo=UTC)


def fixed() -> Worker:
    return Worker(Portal(), clock=[NOON])


def issued(worker: Worker, kind: str, tenant: str = "acme", *, at: datetime | None = None,
           **fields: Any) -> dict[str, Any]:
    return build_command(kind, tenant, issued_at=(at or worker.now[0]).isoformat(), **fields)


# -- the gate: envelope, signature, type, age, key --------------------------------------------

async def test_a_record_that_is_no_envelope_is_refused_and_answered() -> None:
    worker = fixed()
    for raw in (b"{not json", json.dumps({"command": {}}).encode(),
                json.dumps({"command": {}, "signature": "short"}).encode()):
        result = await worker.desk.handle(raw, b"acme")
        assert result.status == "refused" and result.command_id == "unknown"
        assert result.message.startswith("malformed command envelope")
    assert len(worker.results) == 3 and worker.states_table == {}


async def test_without_an_operator_key_every_command_is_refused() -> None:
    worker = fixed()
    worker.desk.operator_key = None
    result = await worker.send(issued(worker, "status"))
    assert result.status == "refused" and "CALLSYNC_OPERATOR_KEY" in result.message


async def test_a_forged_or_altered_command_is_refused_and_changes_nothing() -> None:
    worker = fixed()
    await worker.set_up()
    before = copy.deepcopy([worker.integrations, worker.mappings, worker.states_table])
    forged = issued(worker, "deactivate", command_id="forged-1")
    raw = json.dumps({"command": forged, "signature": sign(forged, b"not the operator key")})
    result = await worker.desk.handle(raw.encode(), b"acme")
    assert (result.status, result.message, result.command_id) == (
        "refused", "bad signature", "forged-1")
    signed = issued(worker, "status")
    altered = {"command": {**signed, "type": "deactivate"},
               "signature": sign(signed, OPERATOR_KEY)}
    result = await worker.desk.handle(json.dumps(altered).encode(), b"acme")
    assert result.message == "bad signature"
    assert [worker.integrations, worker.mappings, worker.states_table] == before
    assert not worker.health().stopped and len(worker.portal.edits) == 1


async def test_an_unknown_type_or_a_bad_field_is_refused_naming_it() -> None:
    worker = fixed()
    unknown = await worker.send(issued(worker, "explode"))
    assert unknown.status == "refused" and "type" in unknown.message
    bad = await worker.send(issued(worker, "deactivate", reason="x" * 501))
    assert bad.status == "refused" and "reason" in bad.message


async def test_a_command_is_accepted_from_24_hours_back_to_5_minutes_ahead() -> None:
    worker = fixed()
    await worker.set_up()
    now = worker.now[0]
    for at, accepted in ((now - timedelta(hours=24, seconds=1), False),
                         (now - timedelta(hours=23, minutes=59), True),
                         (now + timedelta(minutes=4, seconds=59), True),
                         (now + timedelta(minutes=5, seconds=1), False)):
        result = await worker.send(issued(worker, "rekey", at=at))
        assert (result.status == "done") is accepted, (at - now, result.message)
        if not accepted:
            assert "too old or in the future" in result.message


async def test_a_command_keyed_for_another_tenant_is_refused() -> None:
    worker = fixed()
    await worker.set_up()
    result = await worker.send(issued(worker, "deactivate"), key=b"globex")
    assert result.status == "refused" and "record key must be the tenant_id" in result.message
    assert worker.states.get("acme").state == "active" and not worker.health().stopped


# -- repeated ids -----------------------------------------------------------------------------

async def test_a_repeated_id_is_answered_with_the_first_result_whatever_it_was() -> None:
    worker = fixed()
    await worker.set_up()
    refused = issued(worker, "replay", since=NOON.isoformat(),
                     until=(NOON - timedelta(hours=1)).isoformat())
    first = await worker.send(refused)
    assert first.status == "refused"
    again = await worker.send(refused)
    assert again.status == "refused" and again.message == "already handled: " + first.message
    assert worker.replays == []

    rekey = issued(worker, "rekey")
    done = await worker.send(rekey)
    repeated = await worker.send(rekey)
    assert (repeated.status, repeated.data) == ("done", done.data)
    assert repeated.message.startswith("already handled")


async def test_status_and_employees_are_answered_afresh_every_time() -> None:
    worker = fixed()
    await worker.set_up()
    status = issued(worker, "status")
    assert (await worker.send(status)).message == "active"
    await worker.send(issued(worker, "deactivate"))
    assert (await worker.send(status)).message == "deactivated"
    assert status["command_id"] not in worker.states.get("acme").seen_commands


async def test_a_command_that_failed_on_the_portal_is_not_carried_out_when_repeated() -> None:
    worker = fixed()
    await worker.set_up()
    worker.portal.down = True
    command = issued(worker, "deactivate")
    failed = await worker.send(command)
    assert failed.status == "failed" and failed.message.startswith("retailCRM: ")
    assert worker.states.get("acme").state == "active" and not worker.health().stopped
    worker.portal.down = False
    again = await worker.send(command)
    assert again.status == "failed" and again.message.startswith("already handled")
    assert worker.states.get("acme").state == "active" and len(worker.portal.edits) == 1


async def test_a_command_that_broke_after_acting_is_answered_and_never_carried_out_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """An unforeseen failure after the command acted (a portal's answer the desk could not
    take, say) is answered as failed and its id kept: sent again, it is not carried out."""
    worker = fixed()
    await worker.set_up()
    carry_out = worker.desk._carry_out
    acted: list[str] = []

    async def acts_then_breaks(command: Any, secrets: Any) -> Any:
        acted.append(command.command_id)
        await carry_out(command, secrets)
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(worker.desk, "_carry_out", acts_then_breaks)
    command = issued(worker, "deactivate")
    first = await worker.send(command)
    assert (first.status, first.message) == ("failed", "internal:RecursionError")
    assert worker.states.get("acme").state == "deactivated"
    again = await worker.send(command)
    assert again.status == "failed" and again.message.startswith("already handled")
    assert acted == [command["command_id"]]


async def test_a_command_whose_answer_could_not_be_sent_is_still_kept() -> None:
    worker = fixed()
    await worker.set_up()
    sent = worker.desk.report

    async def unsendable(result: Any) -> None:
        raise OSError("the results topic is away")

    worker.desk.report = unsendable
    edits = len(worker.portal.edits)
    command = issued(worker, "deactivate")
    with pytest.raises(OSError):
        await worker.send(command)
    worker.desk.report = sent
    again = await worker.send(command)
    assert again.status == "done" and again.message.startswith("already handled")
    assert len(worker.portal.edits) == edits + 1


async def test_a_command_that_broke_the_desk_is_answered_as_failed() -> None:
    worker = fixed()
    command = issued(worker, "status")
    await worker.desk.failed(worker.signed(command), RuntimeError("boom"))
    await worker.desk.failed(b"\xff", KeyError("x"))
    assert [(r.command_id, r.status, r.message) for r in worker.results] == [
        (command["command_id"], "failed", "internal:RuntimeError"),
        ("unknown", "failed", "internal:KeyError")]


# -- the commands -----------------------------------------------------------------------------

async def test_replay_takes_today_and_the_two_days_before_in_the_tenant_s_zone() -> None:
    worker = fixed()
    await worker.set_up()
    result = await worker.send(issued(worker, "replay"))
    assert result.status == "accepted"
    [(tenant, command_id, window, _)] = worker.replays
    assert (tenant, command_id) == ("acme", result.command_id)
    # 2024-03-13 12:00 in Kyiv (UTC+2): from 2024-03-11 00:00 Kyiv, which is 22:00 UTC before.
    assert window.start == datetime(2024, 3, 10, 22, 0, tzinfo=UTC)
    assert window.end > NOON and window.end - NOON < timedelta(seconds=1)
    assert result.data["window"] == window.as_dict()
    assert window == calendar_days_window(NOON, KYIV)


async def test_replay_of_a_window_given_and_the_refusals() -> None:
    worker = fixed()
    none = await worker.send(issued(worker, "replay"))
    assert none.status == "refused" and "no integration" in none.message
    await worker.set_up()
    since, until = NOON - timedelta(days=7), NOON - timedelta(days=6)
    given = await worker.send(issued(worker, "replay", since=since.isoformat(),
                                     until=until.isoformat()))
    assert given.status == "accepted"
    assert (worker.replays[-1][2].start, worker.replays[-1][2].end) == (since, until)
    worker.states.update("acme", replay=ReplayProgress(
        command_id="r-1", window=worker.replays[-1][2].as_dict(), ends={"0": 5}, next={"0": 0},
        started_at=NOON))
    running = await worker.send(issued(worker, "replay"))
    assert running.status == "refused" and "already running (r-1)" in running.message
    assert len(worker.replays) == 1


async def test_activate_with_a_replay_sets_the_replay_up_before_the_lane_resumes() -> None:
    worker = fixed()
    await worker.set_up()
    await worker.send(issued(worker, "deactivate"))
    resets = list(worker.lanes.resets)
    result = await worker.send(worker.activation(send_after_reactivation=True) | {
        "issued_at": NOON.isoformat()})
    assert result.status == "accepted" and "replaying today" in result.message
    [(_, command_id, window, resets_then)] = worker.replays
    assert command_id == result.command_id and resets_then == resets, "replay first"
    assert worker.lanes.resets == [*resets, "acme"]
    assert window == calendar_days_window(NOON, KYIV)
    assert worker.states.get("acme").state == "active"


async def test_deactivate_parks_the_tenant_even_when_the_portal_refuses_the_module() -> None:
    worker = fixed()
    await worker.set_up()
    worker.portal.gone = True
    result = await worker.send(issued(worker, "deactivate", reason="unpaid"))
    assert result.status == "done" and "could not be switched off" in result.message
    state = worker.states.get("acme")
    assert (state.state, state.reason, state.since) == ("deactivated", "unpaid", NOON)
    # What the lane parks every event with from now on.
    assert worker.health().dead_letter() == DeadLetter(reason=Reason.DEACTIVATED, broken=True)
    worker.portal.gone = False
    clean = await worker.send(issued(worker, "deactivate"))
    assert clean.message == "deactivated: events are parked until re-activation"
    assert worker.portal.edits[-1]["active"] is False


async def test_status_shows_the_config_without_its_key_and_an_unknown_tenant_as_such() -> None:
    worker = fixed()
    unknown = await worker.send(issued(worker, "status", "ghost"))
    assert (unknown.status, unknown.data["state"]) == ("done", "unknown")
    assert unknown.data["key_id"] is None and unknown.data["mapped_employees"] == 0
    await worker.set_up()
    status = await worker.send(issued(worker, "status"))
    assert status.message == "active" and status.data["key_id"] == "k1"
    assert status.data["config"]["portal_url"].startswith("https://acme.retailcrm.ru")
    assert "api_key" not in status.data["config"] and KEY not in status.model_dump_json()
    assert status.data["lane_backlog"] == 0 and status.data["roster"]["managers"] == []
    assert "seen_commands" not in status.data and "commands" not in status.data


async def test_rekey_without_an_integration_is_refused() -> None:
    worker = fixed()
    result = await worker.send(issued(worker, "rekey"))
    assert result.status == "refused" and "no integration" in result.message


async def test_employee_commands_need_the_staff_desk() -> None:
    worker = fixed()
    await worker.set_up()
    for kind, fields in (("link", {"employee_id": "e1", "crm_user_id": SENIOR}),
                         ("unlink", {"employee_id": "e1"}),
                         ("senior", {"crm_user_id": SENIOR}), ("employees", {})):
        result = await worker.send(issued(worker, kind, **fields))
        assert result.status == "refused" and "not available" in result.message, kind
