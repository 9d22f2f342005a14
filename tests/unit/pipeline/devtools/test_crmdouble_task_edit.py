"""The double's tasks/{id}/edit: what changes, completion, and the errors it answers."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from pipeline.crm.methods import TASK_EDIT
from pipeline.devtools.crmdouble.server import CRMDouble
from pipeline.devtools.crmdouble.state import ApiKey, Portal


@pytest.fixture
async def http(crm_double: CRMDouble, portal: Portal) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=crm_double.portal_url("acme"),
                                 headers={"X-API-KEY": "acme-key"}) as client:
        yield client


async def make_task(http: httpx.AsyncClient) -> int:
    r = await http.post("/api/v5/tasks/create", data={"task": json.dumps(
        {"text": "Missed call", "commentary": "Call c1 at 10:00", "performerId": 27})})
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


async def edit(http: httpx.AsyncClient, task_id: int | str, task: Any) -> httpx.Response:
    return await http.post(f"/api/v5/tasks/{task_id}/edit", data={"task": json.dumps(task)})


async def test_an_edit_completes_and_comments_and_only_what_it_names_changes(
        http: httpx.AsyncClient, portal: Portal) -> None:
    task_id = await make_task(http)
    r = await edit(http, task_id, {"complete": True, "commentary": "Call c1 at 10:00\nDone"})
    assert r.status_code == 200 and r.json() == {"success": True, "id": task_id}
    found = (await http.get("/api/v5/tasks", params={"filter[ids][]": task_id})).json()
    [task] = found["tasks"]
    assert task["complete"] is True and task["commentary"].endswith("\nDone")
    assert task["text"] == "Missed call" and task["performerId"] == 27 and task["completedAt"]
    assert portal.task_edits == [{"id": task_id, "complete": True,
                                  "commentary": "Call c1 at 10:00\nDone"}]


async def test_an_unknown_task_is_not_found(http: httpx.AsyncClient) -> None:
    for ident in ("999", "abc"):
        r = await edit(http, ident, {"complete": True})
        assert r.status_code == 404 and r.json()["errorMsg"] == "Not found"


async def test_bad_edits_are_refused_with_the_field(http: httpx.AsyncClient) -> None:
    task_id = await make_task(http)
    r = await edit(http, task_id, {"complete": "yes"})
    assert r.status_code == 400 and r.json()["errors"] == {
        "complete": "This value should be of type bool."}
    r = await edit(http, task_id, {"performerId": 404})
    assert r.status_code == 400 and "performerId" in r.json()["errors"]
    r = await http.post(f"/api/v5/tasks/{task_id}/edit", data={})
    assert r.status_code == 400 and r.json()["errorMsg"] == "Parameter 'task' is missing"
    r = await edit(http, task_id, ["complete"])
    assert r.status_code == 400 and "task" in r.json()["errors"]


async def test_a_key_without_the_method_is_denied(http: httpx.AsyncClient,
                                                  portal: Portal) -> None:
    task_id = await make_task(http)
    portal.keys["narrow"] = ApiKey(key="narrow", label="narrow",
                                   methods=set(portal.keys["acme-key"].methods) - {TASK_EDIT})
    r = await http.post(f"/api/v5/tasks/{task_id}/edit", headers={"X-API-KEY": "narrow"},
                        data={"task": json.dumps({"complete": True})})
    assert r.status_code == 403 and r.json()["errorMsg"] == "Access denied."
    assert portal.tasks[task_id]["complete"] is False
    credentials = (await http.get("/api/credentials")).json()["credentials"]
    assert TASK_EDIT in credentials, "a full key reaches it"
