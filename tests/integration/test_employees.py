"""Employees against the double through a real worker: roster sync, links, fallbacks, status."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pipeline.devtools.crmdouble.admin import UserSpec, add_user
from pipeline.devtools.samples import sample_calls, sample_tenants
from tests.integration.stack import Stack
from tests.waiting import wait_until

pytestmark = pytest.mark.kafka


@pytest.fixture
async def stack(kafka_bootstrap: str, tmp_path: Path) -> AsyncIterator[Stack]:
    s = Stack(kafka_bootstrap, tmp_path, sample_tenants(1),
              extra_env={"CALLSYNC_ROSTER_SYNC_SECONDS": "10"})
    await s.start()
    yield s
    await asyncio.to_thread(s.stop)


def module_codes(stack: Stack) -> list[tuple[int, str]]:
    tenant = stack.tenants[0]
    module = stack.double.state.portals[tenant.config.tenant_id].modules[
        tenant.config.module_code]
    codes = module["integrations"]["telephony"]["additionalCodes"]
    return sorted((c["userId"], c["code"]) for c in codes)


async def roster_after_next_sync(stack: Stack, tid: str, after: datetime) -> list[int]:
    """The managers of the first roster sync that began after `after`: a sync already under
    way when the portal changed (the timer runs on its own) may have read the old users."""
    async def synced() -> list[int] | None:
        roster = (await stack.command("status", tid)).data["roster"]
        if roster["synced_at"] and datetime.fromisoformat(roster["synced_at"]) > after:
            return list(roster["managers"])
        return None

    return await wait_until(synced, "the next roster sync", within=30, every=0.5,
                            detail=stack.worker.log_tail)


async def test_roster_links_fallbacks_and_the_modules_extensions(stack: Stack) -> None:
    tenant = stack.tenants[0]
    tid = tenant.config.tenant_id
    portal = stack.double.state.portals[tid]
    activated = await stack.command("activate", tid, **stack.activation(
        tenant, tenant.config.api_key.get_secret_value()))
    assert activated.status == "done", activated.message
    mapping = tenant.mapping
    assert module_codes(stack) == sorted((link.crm_user_id, link.extension or "")
                                         for link in mapping.employees.values())
    first = await stack.command("status", tid)
    managers = set(first.data["roster"]["managers"])
    assert managers == {u["id"] for u in portal.users.values()
                        if u["active"] and u["isManager"]}

    # the CRM changes: a new manager, one deactivated, one moved out of the managers
    newcomer = add_user(portal, UserSpec(firstName="New", email="new@example.com"))
    gone, moved = sorted(link.crm_user_id for link in mapping.employees.values())[:2]
    portal.users[gone]["active"] = False
    portal.users[moved]["groups"] = [g for g in portal.users[moved]["groups"]
                                     if g["code"] != "manager"]
    portal.users[moved]["isManager"] = False
    synced = await roster_after_next_sync(stack, tid, datetime.now(UTC))
    assert newcomer["id"] in synced and gone not in synced and moved not in synced

    refused = await stack.command("link", tid, employee_id="emp-9", extension="109",
                                  crm_user_id=moved)
    assert refused.status == "refused"
    assert f"CRM user {moved} is not an active user of a manager group" in refused.message
    director = next(u["id"] for u in portal.users.values() if not u["isManager"]
                    and u["active"])
    assert (await stack.command("senior", tid, crm_user_id=director)).status == "refused"

    linked = await stack.command("link", tid, employee_id="emp-9", extension="109",
                                 crm_user_id=newcomer["id"])
    assert linked.status == "done", linked.message
    unlinked = await stack.command("unlink", tid, employee_id="emp-1")
    assert unlinked.status == "done"
    links = unlinked.data["mapping"]["employees"]
    assert "emp-1" not in links and links["emp-9"]["crm_user_id"] == newcomer["id"]
    assert module_codes(stack) == sorted((link["crm_user_id"], link["extension"])
                                         for link in links.values())

    listing = await stack.command("employees", tid)
    assert listing.status == "done"
    assert set(listing.data["mapping"]["employees"]) == set(links)

    # a missed call of an unmapped employee (emp-1 now) and of one whose manager left the
    # managers: both become tasks for the senior manager
    inactive_emp = next(emp for emp, link in mapping.employees.items()
                        if link.crm_user_id == gone)
    base = sample_calls([tenant.sample], 2, seed=31)
    events = [{**base[0], "call_id": "f-unmapped", "direction": "in", "status": "no_answer",
               "talk_seconds": 0, "employee": {"id": "emp-1", "extension": "101"}},
              {**base[1], "call_id": "f-inactive", "direction": "in", "status": "busy",
               "talk_seconds": 0, "employee": {"id": inactive_emp, "extension": "102"}}]
    await stack.publish_calls(events)
    await stack.wait_done()
    tasks = {t["phone"]: t["performerId"] for t in portal.tasks.values()}
    assert tasks == {e["client_phone"]: tenant.senior_manager_id for e in events}
    status = await stack.command("status", tid)
    assert set(status.data["fallbacks"]) == {"emp-1", inactive_emp}


async def test_status_sync_marks_busy_and_restores_unless_changed_by_hand(
        stack: Stack) -> None:
    tenant = stack.tenants[0]
    tid = tenant.config.tenant_id
    portal = stack.double.state.portals[tid]
    activated = await stack.command("activate", tid, **stack.activation(
        tenant, tenant.config.api_key.get_secret_value(), options={"status_sync": True}))
    assert activated.status == "done", activated.message
    (emp, link), (emp2, link2) = list(tenant.mapping.employees.items())[:2]
    now = datetime.now(UTC)

    def stage(call_id: str, employee: str, ext: str, name: str, **kw: Any) -> dict[str, Any]:
        return {"call_id": call_id, "tenant_id": tid, "started_at": now.isoformat(),
                "direction": "in", "client_phone": "+380501234567", "stage": name,
                "employee": {"id": employee, "extension": ext}, "wait_seconds": 2, **kw}

    await stack.publish_calls([stage("s1", emp, "101", "answered", status="in_progress"),
                               stage("s2", emp2, "102", "answered", status="in_progress")])
    await stack.wait_done()
    assert portal.users[link.crm_user_id]["status"] == "busy"
    assert portal.users[link2.crm_user_id]["status"] == "busy"
    portal.users[link2.crm_user_id]["status"] = "break"  # changed by hand during the call
    ended = now + timedelta(seconds=1)
    await stack.publish_calls([
        stage("s1", emp, "101", "ended", status="answered", talk_seconds=1),
        stage("s2", emp2, "102", "ended", status="answered", talk_seconds=1)])
    await stack.wait_done()
    assert ended  # both calls ended within the pop-up age
    assert portal.users[link.crm_user_id]["status"] == "free"
    assert portal.users[link2.crm_user_id]["status"] == "break"
