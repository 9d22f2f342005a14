"""Each contract rule the retailCRM double enforces, over real HTTP on loopback."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from pipeline.devtools.crmdouble.server import CRMDouble
from pipeline.devtools.crmdouble.state import Portal

MODULE = {"code": "ringostat-rs", "integrationCode": "ringostat", "active": True,
          "integrations": {"telephony": {"additionalCodes": [{"userId": 27, "code": "101"}]}}}


def call(n: int, **extra: Any) -> dict[str, Any]:
    return {"externalId": f"c{n}", "date": "2026-11-25 10:00:00", "type": "in",
            "phone": "+380501112233", "result": "answered", "duration": 5,
            "durationWaiting": 1, **extra}


@pytest.fixture
async def http(crm_double: CRMDouble, portal: Portal) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=crm_double.portal_url("acme"),
                                 headers={"X-API-KEY": "acme-key"}) as client:
        yield client


async def enable_telephony(http: httpx.AsyncClient) -> None:
    r = await http.post("/api/v5/integration-modules/ringostat-rs/edit",
                        data={"integrationModule": json.dumps(MODULE)})
    assert r.status_code == 200, r.text


def error(r: httpx.Response) -> str:
    body = r.json()
    assert body["success"] is False
    return str(body["errorMsg"])


async def test_unknown_key_is_wrong_api_key(http: httpx.AsyncClient) -> None:
    r = await http.get("/api/v5/users", headers={"X-API-KEY": "nope"})
    assert r.status_code == 403 and error(r) == 'Wrong "apiKey" value.'


async def test_revoked_key_is_wrong_api_key(crm_double: CRMDouble,
                                            http: httpx.AsyncClient) -> None:
    assert (await http.get("/api/v5/users")).status_code == 200
    admin = await http.post(f"{crm_double.url}/_admin/portals/acme/keys/revoke",
                            json={"key": "acme-key"})
    assert admin.status_code == 200
    r = await http.get("/api/v5/users")
    assert r.status_code == 403 and error(r) == 'Wrong "apiKey" value.'


async def test_missing_key(http: httpx.AsyncClient) -> None:
    r = await http.get("/api/v5/users", headers={"X-API-KEY": ""})
    assert r.status_code == 403 and error(r) == '"apiKey" is missing.'


async def test_key_as_query_parameter_is_accepted(crm_double: CRMDouble, portal: Portal) -> None:
    async with httpx.AsyncClient() as plain:
        r = await plain.get(f"{crm_double.portal_url('acme')}/api/v5/users?apiKey=acme-key")
    assert r.status_code == 200 and r.json()["success"] is True


async def test_method_the_key_lacks_is_access_denied(crm_double: CRMDouble,
                                                     http: httpx.AsyncClient) -> None:
    r = await http.post(f"{crm_double.url}/_admin/portals/acme/keys",
                        json={"key": "narrow", "methods": ["/api/users"]})
    assert r.status_code == 201
    assert (await http.get("/api/v5/users", headers={"X-API-KEY": "narrow"})).status_code == 200
    r = await http.get("/api/v5/users/27", headers={"X-API-KEY": "narrow"})
    assert r.status_code == 403 and error(r) == "Access denied."
    creds = await http.get("/api/credentials", headers={"X-API-KEY": "narrow"})
    assert creds.json()["credentials"] == ["/api/users"]


async def test_unknown_account_json_on_get_html_on_post(crm_double: CRMDouble) -> None:
    async with httpx.AsyncClient(headers={"X-API-KEY": "acme-key"}) as plain:
        r = await plain.get(f"{crm_double.portal_url('ghost')}/api/v5/users")
        assert r.status_code == 404 and error(r) == "Account does not exist."
        r = await plain.post(f"{crm_double.portal_url('ghost')}/api/v5/customers/create")
        assert r.status_code == 405 and r.headers["content-type"].startswith("text/html")


async def test_unknown_method_and_wrong_verb(http: httpx.AsyncClient) -> None:
    r = await http.get("/api/v5/no/such/thing")
    assert r.status_code == 404 and error(r) == "API method not found"
    r = await http.post("/api/v5/users")
    assert r.status_code == 405 and error(r) == "Method Not Allowed"


async def test_rate_limit_is_ten_per_second_per_key_and_address(
        crm_double: CRMDouble, http: httpx.AsyncClient) -> None:
    """retailCRM counts "from one IP", and its clients per key: the double does both."""
    now = [1000.0]
    crm_double.state.clock = lambda: now[0]  # the second passes when the test says so
    await http.post(f"{crm_double.url}/_admin/portals/acme/keys", json={"key": "other"})
    answers = await asyncio.gather(*(http.get("/api/v5/users") for _ in range(15)))
    statuses = sorted(r.status_code for r in answers)
    assert statuses.count(200) == 10 and statuses.count(503) == 5
    limited = next(r for r in answers if r.status_code == 503)
    assert "503 Service Temporarily Unavailable" in limited.text  # HTML, not JSON
    other = await http.get("/api/v5/users", headers={"X-API-KEY": "other"})
    assert other.status_code == 503, "another key from the same address shares its limit"
    counted = {tuple(w.split("\x00")[1:]): len(times) for (w, cls), times
               in crm_double.state.windows.items() if cls == "general"}
    assert counted == {("key", "acme-key"): 10, ("key", "other"): 0, ("ip", "127.0.0.1"): 10}
    now[0] = 1000.5
    assert (await http.get("/api/v5/users")).status_code == 503, "the window is a whole second"
    now[0] = 1001.0
    assert (await http.get("/api/v5/users")).status_code == 200


async def test_a_request_counts_from_when_it_arrived(crm_double: CRMDouble,
                                                   http: httpx.AsyncClient) -> None:
    now = [1000.0]
    crm_double.state.clock = lambda: now[0]
    await http.post(f"{crm_double.url}/_admin/faults", json={"portal": "acme", "latency": 0.3,
                                                             "count": 1})
    slow = asyncio.ensure_future(http.get("/api/v5/users"))  # arrives at 1000.0, held 0.3 s
    await asyncio.sleep(0.1)
    answers = await asyncio.gather(*(http.get("/api/v5/user-groups") for _ in range(9)))
    assert all(r.status_code == 200 for r in answers)
    now[0] = 1000.9  # still within the slow request's second when its answer is made
    assert (await http.get("/api/v5/users")).status_code == 503, "10 arrived in this second"
    assert (await slow).status_code == 200, "counted on arrival, so it was within the limit"


async def test_telephony_methods_allow_forty_per_second(crm_double: CRMDouble,
                                                       http: httpx.AsyncClient) -> None:
    now = [1000.0]
    crm_double.state.clock = lambda: now[0]  # 45 requests in one second, however slow the host
    answers = await asyncio.gather(*(http.get("/api/v5/telephony/manager",
                                              params={"phone": "+380501112233"})
                                     for _ in range(45)))
    statuses = [r.status_code for r in answers]
    assert statuses.count(200) == 40 and statuses.count(503) == 5
    assert (await http.get("/api/v5/users")).status_code == 200, "separate from the 10/s budget"


async def test_telephony_disabled_until_the_module_is_active(http: httpx.AsyncClient) -> None:
    r = await http.post("/api/v5/telephony/calls/upload", data={"calls": json.dumps([call(1)])})
    assert r.status_code == 400
    assert error(r) == "Telephony not enabled or not supports calls upload"
    r = await http.post("/api/v5/telephony/call/event",
                        data={"event": json.dumps({"phone": "+380501112233", "type": "in"})})
    assert error(r) == "Telephony not enabled"
    await enable_telephony(http)
    inactive = {**MODULE, "active": False}
    r = await http.post("/api/v5/integration-modules/ringostat-rs/edit",
                        data={"integrationModule": json.dumps(inactive)})
    assert r.status_code == 200
    r = await http.post("/api/v5/telephony/calls/upload", data={"calls": json.dumps([call(1)])})
    assert error(r) == "Telephony not enabled or not supports calls upload"


async def test_a_module_code_must_start_with_its_integration_code(
        http: httpx.AsyncClient, portal: Portal) -> None:
    module = {**MODULE, "code": "acme-phone"}
    r = await http.post("/api/v5/integration-modules/acme-phone/edit",
                        data={"integrationModule": json.dumps(module)})
    assert r.status_code == 400 and error(r) == "Errors in the entity format"
    assert r.json()["errors"] == {"code": "Code prefix must match integrationCode"}
    assert portal.modules == {} and not portal.telephony_enabled()
    for code in ("ringostat", "ringostat-acme"):
        r = await http.post(f"/api/v5/integration-modules/{code}/edit",
                            data={"integrationModule": json.dumps({**MODULE, "code": code})})
        assert r.status_code == 200, r.text


async def test_a_module_edit_with_nothing_to_report_answers_an_empty_array(
        http: httpx.AsyncClient) -> None:
    r = await http.post("/api/v5/integration-modules/ringostat-rs/edit",
                        data={"integrationModule": json.dumps(MODULE)})
    assert r.json() == {"success": True, "info": []}, "PHP's json_encode of an empty array"
    telephony = {"additionalCodes": [{"userId": 99, "code": "199"}],
                 "externalPhones": [{"siteCode": "nowhere", "externalPhone": "+380440000000"}]}
    r = await http.post("/api/v5/integration-modules/ringostat-rs/edit", data={
        "integrationModule": json.dumps({**MODULE, "integrations": {"telephony": telephony}})})
    assert r.json()["info"] == {"notExistUsersIds": [99], "notExistSiteCodes": ["nowhere"]}


async def test_reference_sites_are_keyed_by_code_for_a_key_that_has_the_method(
        crm_double: CRMDouble, http: httpx.AsyncClient) -> None:
    r = await http.get("/api/v5/reference/sites")
    assert r.status_code == 403 and error(r) == "Access denied.", "not in the default key"
    await http.post(f"{crm_double.url}/_admin/portals/acme/keys",
                    json={"key": "ref", "methods": ["/api/reference/sites"]})
    r = await http.get("/api/v5/reference/sites", headers={"X-API-KEY": "ref"})
    assert r.status_code == 200
    assert r.json() == {"success": True, "sites": {"main": {"code": "main", "name": "Main shop"}}}
    creds = (await http.get("/api/credentials", headers={"X-API-KEY": "ref"})).json()
    assert creds["siteAccess"] == "access_full" and creds["sitesAvailable"] == ["main"]


async def test_upload_caps_batches_at_fifty(http: httpx.AsyncClient, portal: Portal) -> None:
    await enable_telephony(http)
    r = await http.post("/api/v5/telephony/calls/upload",
                        data={"calls": json.dumps([call(n) for n in range(51)])})
    assert r.status_code == 400 and error(r) == "Errors in the input parameters"
    assert portal.calls == {}
    r = await http.post("/api/v5/telephony/calls/upload",
                        data={"calls": json.dumps([call(n) for n in range(50)])})
    assert r.status_code == 200 and r.json()["processedCallsCount"] == 50


async def test_known_call_external_ids_come_back_as_duplicates(http: httpx.AsyncClient,
                                                               portal: Portal) -> None:
    await enable_telephony(http)
    first = await http.post("/api/v5/telephony/calls/upload",
                            data={"calls": json.dumps([call(1), call(2)])})
    assert first.json() == {"success": True, "processedCallsCount": 2, "duplicateCalls": []}
    again = await http.post("/api/v5/telephony/calls/upload",
                            data={"calls": json.dumps([call(2), call(3)])})
    assert again.json() == {"success": True, "processedCallsCount": 1, "duplicateCalls": ["c2"]}
    assert sorted(portal.calls) == ["c1", "c2", "c3"]


async def test_invalid_call_fields_reject_the_whole_batch(http: httpx.AsyncClient,
                                                          portal: Portal) -> None:
    await enable_telephony(http)
    bad = [call(1), call(2, result="no answered", date="2026-11-25 10:00")]
    r = await http.post("/api/v5/telephony/calls/upload", data={"calls": json.dumps(bad)})
    assert r.status_code == 400 and error(r) == "Errors in the entity format"
    assert set(r.json()["errors"]) == {"calls[1].result", "calls[1].date"}
    assert portal.calls == {}


async def test_malformed_json_field_and_missing_parameter(http: httpx.AsyncClient) -> None:
    await enable_telephony(http)
    r = await http.post("/api/v5/telephony/calls/upload", data={"calls": "[{not json"})
    assert r.status_code == 400 and error(r) == "Errors in the input parameters"
    assert "calls" in r.json()["errors"]
    r = await http.post("/api/v5/telephony/calls/upload", data={})
    assert r.status_code == 400 and error(r) == "Parameter 'calls' is missing"
    r = await http.get("/api/v5/telephony/manager")
    assert error(r) == "Parameter 'phone' is missing"


async def test_customer_external_id_is_unique_and_unknown_ones_are_not_found(
        http: httpx.AsyncClient, portal: Portal) -> None:
    body = {"customer": json.dumps({"externalId": "rs-1", "phones": [{"number": "+3805"}]})}
    first = await http.post("/api/v5/customers/create", data=body)
    assert first.status_code == 201 and first.json()["success"] is True
    again = await http.post("/api/v5/customers/create", data=body)
    assert again.status_code == 400 and error(again) == "Errors in the entity format"
    assert "externalId" in again.json()["errors"]
    assert len(portal.customers) == 1
    r = await http.get("/api/v5/customers/rs-404")
    assert r.status_code == 404 and error(r) == "Not found"


async def test_order_external_id_is_unique_and_order_method_must_exist(
        http: httpx.AsyncClient, portal: Portal) -> None:
    order = {"externalId": "o-1", "orderMethod": "phone"}
    assert (await http.post("/api/v5/orders/create",
                            data={"order": json.dumps(order)})).status_code == 201
    r = await http.post("/api/v5/orders/create", data={"order": json.dumps(order)})
    assert r.status_code == 400 and "externalId" in r.json()["errors"]
    r = await http.post("/api/v5/orders/create",
                        data={"order": json.dumps({"externalId": "o-2", "orderMethod": "fax"})})
    assert r.status_code == 400 and "orderMethod" in r.json()["errors"]
    assert len(portal.orders) == 1


async def test_customers_and_orders_upload_fifty_at_most_and_answer_460_for_what_failed(
        http: httpx.AsyncClient, portal: Portal) -> None:
    def customers(*ids: str) -> dict[str, str]:
        return {"site": "main", "customers": json.dumps(
            [{"externalId": i, "phones": [{"number": "+3805"}]} for i in ids])}

    r = await http.post("/api/v5/customers/upload", data=customers("a", "b"))
    assert r.status_code == 200 and r.json()["success"] is True
    made = {c["externalId"]: c["id"] for c in r.json()["uploadedCustomers"]}
    assert set(made) == {"a", "b"} and len(portal.customers) == 2
    r = await http.post("/api/v5/customers/upload", data=customers("b", "c"))
    assert r.status_code == 460 and error(r) == "Customers are loaded with errors"
    body = r.json()
    assert [c["externalId"] for c in body["uploadedCustomers"]] == ["c"]
    assert body["failedCustomers"] == [{"externalId": "b"}]
    assert isinstance(body["errors"], list) and "b already exists" in body["errors"][0]
    r = await http.post("/api/v5/customers/upload",
                        data=customers(*[f"x{n}" for n in range(51)]))
    assert r.status_code == 400 and error(r) == "Errors in the input parameters"
    assert len(portal.customers) == 3

    orders = [{"externalId": "o-1", "orderMethod": "phone", "customer": {"id": made["a"]}},
              {"externalId": "o-2", "orderMethod": "fax"}]
    r = await http.post("/api/v5/orders/upload", data={"orders": json.dumps(orders)})
    assert r.status_code == 460 and error(r) == "Orders are loaded with errors"
    assert [o["externalId"] for o in r.json()["uploadedOrders"]] == ["o-1"]
    assert r.json()["failedOrders"] == [{"externalId": "o-2"}]
    [order] = portal.orders.values()
    assert order["customer"]["id"] == made["a"]


async def test_tasks_need_a_performer_and_are_never_deduplicated(http: httpx.AsyncClient,
                                                                 portal: Portal) -> None:
    r = await http.post("/api/v5/tasks/create", data={"task": json.dumps({"text": "x"})})
    assert r.status_code == 400 and r.json()["errors"] == {
        "performerId": "This value should not be blank."}
    task = {"text": "Call back", "performerId": 27, "datetime": "2026-11-25 10:00"}
    for _ in range(2):
        assert (await http.post("/api/v5/tasks/create",
                                data={"task": json.dumps(task)})).status_code == 201
    assert len(portal.tasks) == 2
    bad = {**task, "datetime": "2026-11-25 10:00:00"}
    r = await http.post("/api/v5/tasks/create", data={"task": json.dumps(bad)})
    assert r.status_code == 400 and "datetime" in r.json()["errors"]
    r = await http.post("/api/v5/tasks/create",
                        data={"task": json.dumps({**task, "performerId": 999})})
    assert r.status_code == 400 and "performerId" in r.json()["errors"]


async def test_users_filters_and_pagination(http: httpx.AsyncClient) -> None:
    r = await http.get("/api/v5/users", params={"filter[active]": "1",
                                                "filter[groups][]": "manager"})
    assert sorted(u["id"] for u in r.json()["users"]) == [27, 28]
    r = await http.get("/api/v5/users", params={"limit": "30"})
    assert r.status_code == 400 and "limit" in r.json()["errors"]
    r = await http.get("/api/v5/users", params={"limit": "20", "page": "2"})
    assert r.json()["users"] == [] and r.json()["pagination"]["totalCount"] == 4


async def test_user_status_values_are_checked(http: httpx.AsyncClient, portal: Portal) -> None:
    assert (await http.post("/api/v5/users/27/status", data={"status": "busy"})).is_success
    assert portal.users[27]["status"] == "busy"
    r = await http.post("/api/v5/users/27/status", data={"status": "sleeping"})
    assert r.status_code == 400
    assert (await http.post("/api/v5/users/999/status", data={"status": "busy"})).status_code \
        == 404


async def test_call_event_validates_and_reports_unknown_codes(http: httpx.AsyncClient,
                                                              portal: Portal) -> None:
    await enable_telephony(http)
    ev = {"phone": "+380501112233", "type": "hangup", "hangupStatus": "no answered",
          "codes": ["101", "555"], "userIds": [27, 999]}
    r = await http.post("/api/v5/telephony/call/event", data={"event": json.dumps(ev)})
    assert r.json() == {"success": True, "notExistCodes": ["555"], "notExistUsers": [999]}
    bad = {**ev, "hangupStatus": "no answer"}
    r = await http.post("/api/v5/telephony/call/event", data={"event": json.dumps(bad)})
    assert r.status_code == 400 and "hangupStatus" in r.json()["errors"]
    assert len(portal.call_events) == 1


async def test_faults_status_latency_and_count(crm_double: CRMDouble,
                                               http: httpx.AsyncClient) -> None:
    admin = f"{crm_double.url}/_admin/faults"
    await http.post(admin, json={"portal": "acme", "method": "/api/users", "status": 500,
                                 "count": 2})
    assert [(await http.get("/api/v5/users")).status_code for _ in range(3)] == [500, 500, 200]
    await http.post(admin, json={"portal": "acme", "latency": 0.3})
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert (await http.get("/api/v5/user-groups")).status_code == 200
    assert loop.time() - started >= 0.3
    await http.delete(admin)
    await http.post(admin, json={"portal": "acme", "disconnect": True, "count": 1})
    with pytest.raises(httpx.TransportError):
        await http.get("/api/v5/users")


async def test_admin_changes_users_and_counts_requests(crm_double: CRMDouble,
                                                       http: httpx.AsyncClient) -> None:
    r = await http.patch(f"{crm_double.url}/_admin/portals/acme/users/28",
                         json={"groups": ["director"]})
    assert r.json()["isManager"] is False
    await http.get("/api/v5/users", headers={"X-API-KEY": "nope"})
    await http.get("/api/v5/users")
    stats = (await http.get(f"{crm_double.url}/_admin/stats")).json()["acme"]
    assert stats["by_key"]["acme"] == {"200": 1} and stats["by_key"]["<unknown>"] == {"403": 1}
    snapshot = (await http.get(f"{crm_double.url}/_admin/portals/acme")).json()
    assert all("acme-key" not in json.dumps(k) for k in snapshot["keys"])


async def test_what_retailcrm_would_not_take_the_double_refuses(http: httpx.AsyncClient,
                                                                portal: Portal) -> None:
    """A double that takes what retailCRM refuses proves nothing: limits other than 20, 50 and
    100, booleans other than 1 and 0, filters it does not apply (answered with everything
    before), a filter not bracket-encoded, an id that is no number, a pop-up for nobody."""
    r = await http.get("/api/v5/users", params={"limit": "250"})
    assert r.status_code == 400 and "limit" in r.json()["errors"]
    r = await http.get("/api/v5/users", params={"filter[active]": "True"})
    assert r.status_code == 400 and "filter[active]" in r.json()["errors"]
    r = await http.get("/api/v5/users", params={"filter[active]": "0"})
    assert r.status_code == 200 and not any(u["active"] for u in r.json()["users"])
    r = await http.get("/api/v5/customers", params={"filter[phone]": "+380501112233"})
    assert r.status_code == 400 and "filter[phone]" in r.json()["errors"]
    r = await http.get("/api/v5/users", params={"filter": '{"active": 0}'})
    assert r.status_code == 400 and "filter" in r.json()["errors"]
    r = await http.get("/api/v5/users/abc")
    assert r.status_code == 404 and error(r) == "Not found"
    await enable_telephony(http)
    r = await http.post("/api/v5/telephony/call/event",
                        data={"event": json.dumps({"phone": "+380501112233", "type": "in"})})
    assert r.status_code == 400 and "codes" in r.json()["errors"]
    customer = {"externalId": "50%off", "firstName": "Odd"}
    r = await http.post("/api/v5/customers/create", data={"customer": json.dumps(customer)})
    assert r.status_code == 201
    r = await http.get("/api/v5/customers/50%25off")  # decoded once, as a portal does
    assert r.status_code == 200 and r.json()["customer"]["externalId"] == "50%off"


async def test_the_documented_filters_it_takes_are_applied(http: httpx.AsyncClient) -> None:
    for n, email in enumerate(("a@acme.test", "b@acme.test")):
        customer = {"externalId": f"f{n}", "firstName": "F", "email": email}
        r = await http.post("/api/v5/customers/create", data={"customer": json.dumps(customer)})
        assert r.status_code == 201
    r = await http.get("/api/v5/customers", params={"filter[email]": "b@acme.test"})
    assert [c["externalId"] for c in r.json()["customers"]] == ["f1"]
    r = await http.get("/api/v5/customers", params={"filter[sites][]": "nowhere"})
    assert r.status_code == 200 and r.json()["customers"] == []
    r = await http.get("/api/v5/tasks", params={"filter[status]": "completed"})
    assert r.status_code == 200 and r.json()["tasks"] == []
    r = await http.get("/api/v5/tasks", params={"filter[status]": "done"})
    assert r.status_code == 400 and "filter[status]" in r.json()["errors"]
    r = await http.get("/api/v5/users", params={"filter[online]": "1"})
    assert r.status_code == 200 and all(u["online"] for u in r.json()["users"])


async def test_the_account_settings_name_its_time_zone_for_a_key_that_has_the_method(
        crm_double: CRMDouble, portal: Portal, http: httpx.AsyncClient) -> None:
    portal.timezone = "Asia/Almaty"
    r = await http.get("/api/v5/settings")
    assert r.status_code == 403 and error(r) == "Access denied.", "not in the default key"
    await http.post(f"{crm_double.url}/_admin/portals/acme/keys",
                    json={"key": "set", "methods": ["/api/settings"]})
    r = await http.get("/api/v5/settings", headers={"X-API-KEY": "set"})
    assert r.status_code == 200
    assert r.json()["settings"]["timezone"]["value"] == "Asia/Almaty"
