"""Every client method's request encoding and every error class, against httpx.MockTransport."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from pipeline.crm import errors as e
from pipeline.crm.client import RetailCRMClient
from schemas.crm import (
    AdditionalCode,
    CallEventPayload,
    CallResult,
    CallUpload,
    CustomerPayload,
    CustomerPhone,
    HangupStatus,
    IntegrationModulePayload,
    Integrations,
    OrderPayload,
    TaskPayload,
    TelephonyConfiguration,
)

KEY = "s3cr3t-key-value"
PAGE = {"limit": 20, "totalCount": 1, "currentPage": 1, "totalPageCount": 1}
CALL = CallUpload(externalId="c1", date="2026-11-25 10:00:00", type="in", phone="+380501112233",
                  userId=27, result=CallResult.NO_ANSWER, duration=0, durationWaiting=12)


class Recorder:
    def __init__(self, status: int = 200, body: Any = None, *, text: str | None = None,
                 content_type: str = "application/json") -> None:
        self.requests: list[httpx.Request] = []
        self.status, self.body, self.text, self.content_type = status, body, text, content_type

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        content = self.text if self.text is not None else json.dumps(self.body)
        return httpx.Response(self.status, content=content.encode(),
                              headers={"content-type": self.content_type})

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]

    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(str(self.last.url)).query)

    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.last.content.decode()).items()}


def client_for(recorder: Recorder) -> RetailCRMClient:
    return RetailCRMClient(base_url="https://acme.retailcrm.ru/", api_key=KEY,
                           transport=httpx.MockTransport(recorder))


Call = Callable[[RetailCRMClient], Awaitable[Any]]

# (call, verb, path, reply body, check of the typed result)
METHODS: list[tuple[str, Call, str, str, dict[str, Any], Callable[[Any], bool]]] = [
    ("credentials", lambda c: c.credentials(), "GET", "/api/credentials",
     {"credentials": ["/api/users"], "scopes": ["user_read"], "siteAccess": "access_full",
      "sitesAvailable": ["main"]}, lambda r: r.credentials == ["/api/users"]),
    ("users", lambda c: c.users(filter={"active": True, "groups": ["manager"]}, limit=50),
     "GET", "/api/v5/users", {"pagination": PAGE, "users": [{"id": 27, "active": True}]},
     lambda r: r.users[0].id == 27),
    ("user", lambda c: c.user(27), "GET", "/api/v5/users/27",
     {"user": {"id": 27, "active": True, "groups": [{"code": "manager"}]}},
     lambda r: r.groups[0].code == "manager"),
    ("set_user_status", lambda c: c.set_user_status(27, "busy"), "POST",
     "/api/v5/users/27/status", {}, lambda r: r is None),
    ("user_groups", lambda c: c.user_groups(), "GET", "/api/v5/user-groups",
     {"pagination": PAGE, "groups": [{"code": "manager", "isManager": True}]},
     lambda r: r.groups[0].isManager),
    ("telephony_manager", lambda c: c.telephony_manager("+380501112233"), "GET",
     "/api/v5/telephony/manager",
     {"manager": {"id": 27}, "customer": {"id": 5, "phones": [{"number": "+380501112233"}]}},
     lambda r: r.manager.id == 27 and r.customer.id == 5),
    ("upload_calls", lambda c: c.upload_calls([CALL]), "POST", "/api/v5/telephony/calls/upload",
     {"processedCallsCount": 0, "duplicateCalls": ["c1"]}, lambda r: r.duplicateCalls == ["c1"]),
    ("call_event", lambda c: c.call_event(CallEventPayload(
        phone="+380501112233", type="hangup", userIds=[27], hangupStatus=HangupStatus.NO_ANSWERED)),
     "POST", "/api/v5/telephony/call/event", {"notExistCodes": [], "notExistUsers": [99]},
     lambda r: r.notExistUsers == [99]),
    ("customers", lambda c: c.customers(filter={"externalIds": ["a", "b"]}), "GET",
     "/api/v5/customers", {"pagination": PAGE, "customers": [{"id": 1}]},
     lambda r: r.customers[0].id == 1),
    ("customer", lambda c: c.customer("rs acme/1"), "GET",
     "/api/v5/customers/rs%20acme%2F1", {"customer": {"id": 1, "externalId": "rs acme/1"}},
     lambda r: r.externalId == "rs acme/1"),
    ("create_customer", lambda c: c.create_customer(CustomerPayload(
        externalId="x", phones=[CustomerPhone(number="+380501112233")], firstName="Іван"),
        site="main"), "POST", "/api/v5/customers/create", {"id": 7}, lambda r: r == 7),
    ("edit_customer", lambda c: c.edit_customer("x", CustomerPayload(managerId=27)), "POST",
     "/api/v5/customers/x/edit", {"id": 7}, lambda r: r == 7),
    ("upload_customers", lambda c: c.upload_customers([CustomerPayload(externalId="a")],
                                                      site="main"),
     "POST", "/api/v5/customers/upload", {"uploadedCustomers": [{"id": 1, "externalId": "a"}]},
     lambda r: r.uploaded == {"a": 1} and r.failed == []),
    ("upload_orders", lambda c: c.upload_orders([OrderPayload(externalId="o1")]),
     "POST", "/api/v5/orders/upload",
     {"uploadedOrders": [{"id": 3, "externalId": "o1"}], "orders": [{"id": 3}]},
     lambda r: r.uploaded == {"o1": 3}),
    ("orders", lambda c: c.orders(filter={"externalIds": ["o1"]}), "GET", "/api/v5/orders",
     {"pagination": PAGE, "orders": [{"id": 3, "externalId": "o1"}]},
     lambda r: r.orders[0].externalId == "o1"),
    ("create_order", lambda c: c.create_order(OrderPayload(externalId="o1", orderMethod="phone")),
     "POST", "/api/v5/orders/create", {"id": 3, "order": {"id": 3, "number": "3A"}},
     lambda r: r.id == 3 and r.order.number == "3A"),
    ("tasks", lambda c: c.tasks(filter={"performers": [27]}), "GET", "/api/v5/tasks",
     {"pagination": PAGE, "tasks": [{"id": 9, "text": "Call back"}]},
     lambda r: r.tasks[0].text == "Call back"),
    ("create_task", lambda c: c.create_task(TaskPayload(text="Call back", performerId=27,
                                                        datetime="2026-11-25 10:00")),
     "POST", "/api/v5/tasks/create", {"id": 9}, lambda r: r == 9),
    ("status_groups", lambda c: c.status_groups(), "GET", "/api/v5/reference/status-groups",
     {"statusGroups": {"new": {"code": "new", "statuses": ["new"]}}},
     lambda r: r["new"].statuses == ["new"]),
    ("sites", lambda c: c.sites(), "GET", "/api/v5/reference/sites",
     {"sites": {"main": {"code": "main", "name": "Main shop"}}},
     lambda r: r["main"].name == "Main shop"),
    ("account_timezone", lambda c: c.account_timezone(), "GET", "/api/v5/settings",
     {"settings": {"timezone": {"value": "Asia/Almaty", "updated_at": "2024-01-01 00:00:00"},
                   "system_language": {"value": "RU"}}},
     lambda r: r == "Asia/Almaty"),
    ("integration_module", lambda c: c.integration_module("ringostat"), "GET",
     "/api/v5/integration-modules/ringostat",
     {"integrationModule": {"code": "ringostat", "active": True}}, lambda r: r.active),
    ("edit_integration_module", lambda c: c.edit_integration_module(IntegrationModulePayload(
        code="ringostat", integrationCode="ringostat", active=True,
        integrations=Integrations(telephony=TelephonyConfiguration(
            additionalCodes=[AdditionalCode(userId=27, code="101")])))),
     "POST", "/api/v5/integration-modules/ringostat/edit", {"info": {}},
     lambda r: r.info == {}),
]


@pytest.mark.parametrize(("name", "call", "verb", "path", "reply", "check"), METHODS,
                         ids=[m[0] for m in METHODS])
async def test_method_request_and_typed_result(name: str, call: Call, verb: str, path: str,
                                               reply: dict[str, Any],
                                               check: Callable[[Any], bool]) -> None:
    recorder = Recorder(201 if name.startswith("create") else 200, {"success": True, **reply})
    async with client_for(recorder) as client:
        result = await call(client)
    assert check(result)
    assert recorder.last.method == verb
    assert recorder.last.url.raw_path.decode().split("?")[0] == path
    assert recorder.last.headers["X-API-KEY"] == KEY
    assert KEY not in str(recorder.last.url)
    if verb == "POST":
        assert recorder.last.headers["content-type"] == "application/x-www-form-urlencoded"


async def test_get_parameters_use_php_brackets_and_numeric_booleans() -> None:
    recorder = Recorder(body={"success": True, "pagination": PAGE, "users": []})
    async with client_for(recorder) as client:
        await client.users(filter={"active": True, "groups": ["manager", "sales"]}, page=2,
                           limit=50)
    assert recorder.query() == {"filter[active]": ["1"], "filter[groups][]": ["manager", "sales"],
                                "page": ["2"], "limit": ["50"]}


async def test_telephony_manager_sends_flags_as_one_and_zero() -> None:
    recorder = Recorder(body={"success": True})
    async with client_for(recorder) as client:
        await client.telephony_manager("+380501112233", details=True, ignore_status=False)
    assert recorder.query() == {"phone": ["+380501112233"], "details": ["1"],
                                "ignoreStatus": ["0"]}


async def test_post_json_encodes_nested_fields_into_one_form_field() -> None:
    recorder = Recorder(201, {"success": True, "id": 7})
    async with client_for(recorder) as client:
        await client.create_customer(CustomerPayload(externalId="x", firstName="Іван",
                                                     phones=[CustomerPhone(number="+3805")]),
                                     site="main")
    form = recorder.form()
    assert form["site"] == "main"
    assert json.loads(form["customer"]) == {"externalId": "x", "firstName": "Іван",
                                            "phones": [{"number": "+3805"}]}
    assert "Іван" in form["customer"]  # ensure_ascii=False, as the official clients send it


async def test_calls_upload_sends_a_json_array_and_refuses_more_than_fifty() -> None:
    recorder = Recorder(body={"success": True, "processedCallsCount": 1})
    async with client_for(recorder) as client:
        await client.upload_calls([CALL])
        with pytest.raises(ValueError, match="at most 50"):
            await client.upload_calls([CALL] * 51)
    assert len(recorder.requests) == 1
    assert json.loads(recorder.form()["calls"])[0]["result"] == "no answer"


async def test_bad_page_limit_is_refused_before_sending() -> None:
    recorder = Recorder(body={"success": True})
    async with client_for(recorder) as client:
        with pytest.raises(ValueError, match="page limit"):
            await client.users(limit=30)
    assert recorder.requests == []


ERRORS: list[tuple[int, Any, str | None, type[e.RetailCRMError]]] = [
    (403, {"success": False, "errorMsg": '"apiKey" is missing.'}, None, e.MissingApiKey),
    (403, {"success": False, "errorMsg": 'Wrong "apiKey" value.'}, None, e.InvalidApiKey),
    (403, {"success": False, "errorMsg": "Access denied."}, None, e.AccessDenied),
    (404, {"success": False, "errorMsg": "Account does not exist."}, None, e.AccountNotFound),
    (405, None, "<html><body>405 Not Allowed</body></html>", e.AccountNotFound),
    (400, {"success": False, "errorMsg": "Errors in the entity format",
           "errors": {"phone": "bad"}}, None, e.ValidationFailed),
    (400, {"success": False, "errorMsg": "Validation error"}, None, e.ValidationFailed),
    (400, {"success": False, "errorMsg": "Parameter 'calls' is missing"}, None,
     e.MissingParameter),
    (404, {"success": False, "errorMsg": "Not found"}, None, e.NotFound),
    (400, {"success": False, "errorMsg": "Telephony not enabled or not supports calls upload"},
     None, e.TelephonyDisabled),
    (460, {"success": False, "errorMsg": "Customers are loaded with errors",
           "uploadedCustomers": [{"id": 1, "externalId": "a"}],
           "failedCustomers": [{"externalId": "b"}], "errors": ["b: bad"]}, None,
     e.PartialUpload),
    (503, None, "<html><title>503 Service Temporarily Unavailable</title></html>", e.RateLimited),
    (429, {"success": False}, None, e.RateLimited),
    (500, None, "Internal Server Error", e.CRMServerError),
    (502, None, "<html>Bad Gateway</html>", e.CRMServerError),
    (200, {"success": False, "errorMsg": "Errors in the entity format"}, None,
     e.ValidationFailed),
    # No retailCRM answer: a moved address, another server, a proxy. Not a verdict on the
    # data (a rejection would send each call to the invalid topic, the tenant left active).
    (301, None, "<html>Moved Permanently</html>", e.AccountNotFound),
    (308, {"success": True}, None, e.AccountNotFound),
    (404, {"success": False}, None, e.AccountNotFound),
    (404, None, "no such path", e.AccountNotFound),
    (400, None, "<html><body>400 Bad Request (proxy)</body></html>", e.CRMServerError),
    (413, None, "Request Entity Too Large", e.CRMServerError),
]


@pytest.mark.parametrize(("status", "body", "text", "expected"), ERRORS,
                         ids=[f"{x[0]}-{x[3].__name__}" for x in ERRORS])
async def test_each_error_class(status: int, body: Any, text: str | None,
                                expected: type[e.RetailCRMError]) -> None:
    recorder = Recorder(status, body, text=text,
                        content_type="text/html" if text else "application/json")
    async with client_for(recorder) as client:
        with pytest.raises(expected) as caught:
            await client.user(27)
    err = caught.value
    assert type(err) is expected
    assert err.method == "/api/users/{id}"
    assert KEY not in str(err) and KEY not in repr(err.args)
    assert isinstance(err, e.CRMAPIError) and err.status == status
    assert err.retryable == isinstance(err, e.CRMRetryableError)


async def test_partial_upload_carries_uploaded_and_failed_items() -> None:
    recorder = Recorder(460, {"success": False, "errorMsg": "Orders are loaded with errors",
                              "uploadedOrders": [{"id": 1, "externalId": "a"}],
                              "failedOrders": [{"externalId": "b"}]})
    async with client_for(recorder) as client:
        with pytest.raises(e.PartialUpload) as caught:
            await client.orders()
    assert caught.value.uploaded == [{"id": 1, "externalId": "a"}]
    assert caught.value.failed == [{"externalId": "b"}]


async def test_a_460_to_an_upload_is_its_answer_what_was_made_and_what_failed() -> None:
    recorder = Recorder(460, {"success": False, "errorMsg": "Customers are loaded with errors",
                              "uploadedCustomers": [{"id": 1, "externalId": "a"}],
                              "failedCustomers": [{"externalId": "b"}],
                              "errors": ["Customer with externalId=b already exists."]})
    async with client_for(recorder) as client:
        result = await client.upload_customers(
            [CustomerPayload(externalId="a"), CustomerPayload(externalId="b")], site="main")
        with pytest.raises(ValueError, match="at most 50"):
            await client.upload_customers([CustomerPayload(externalId="x")] * 51)
    assert (result.uploaded, result.failed) == ({"a": 1}, ["b"])
    assert result.errors == ["Customer with externalId=b already exists."]
    assert [c["externalId"] for c in json.loads(recorder.form()["customers"])] == ["a", "b"]
    assert recorder.form()["site"] == "main"


async def test_a_460_whose_lists_are_nonsense_is_malformed_not_a_crash() -> None:
    recorder = Recorder(460, {"success": False, "errorMsg": "Orders are loaded with errors",
                              "uploadedOrders": [{"id": "not a number"}], "failedOrders": 7})
    async with client_for(recorder) as client:
        with pytest.raises(e.CRMMalformedResponse):
            await client.upload_orders([OrderPayload(externalId="o1")])
        recorder.status, recorder.body = 200, {"success": True, "uploadedOrders": "seven"}
        nothing = await client.upload_orders([OrderPayload(externalId="o1")])
    assert nothing.uploaded == {}, "none listed as made: each is looked for, then made"


async def test_validation_error_exposes_field_errors_in_both_shapes() -> None:
    recorder = Recorder(400, {"success": False, "errorMsg": "Errors in the entity format",
                              "errors": {"customer[phones]": "Invalid"}})
    async with client_for(recorder) as client:
        with pytest.raises(e.ValidationFailed, match=r"customer\[phones\]: Invalid") as caught:
            await client.create_customer(CustomerPayload(externalId="x"))
    assert caught.value.errors == {"customer[phones]": "Invalid"}
    assert e.MissingParameter("m", error_msg="Parameter 'calls' is missing").parameter == "calls"


@pytest.mark.parametrize(("raised", "expected"), [
    (httpx.ConnectError("refused"), "ConnectError"),
    (httpx.ReadTimeout("slow"), "timed out"),
])
async def test_transport_failures_are_retryable(raised: Exception, expected: str) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise raised

    async with RetailCRMClient(base_url="https://acme.retailcrm.ru", api_key=KEY,
                               transport=httpx.MockTransport(fail)) as client:
        with pytest.raises(e.CRMTransportError, match=expected) as caught:
            await client.users()
    assert caught.value.retryable


async def test_observer_sees_method_and_outcome_and_the_key_never_prints() -> None:
    seen: list[tuple[str, str]] = []
    recorder = Recorder(403, {"success": False, "errorMsg": 'Wrong "apiKey" value.'})
    client = RetailCRMClient(base_url="https://acme.retailcrm.ru", api_key=KEY,
                             transport=httpx.MockTransport(recorder),
                             observer=lambda m, o, s, w: seen.append((m, o)))
    with pytest.raises(e.InvalidApiKey):
        await client.users()
    await client.aclose()
    assert seen == [("/api/users", "InvalidApiKey")]
    assert KEY not in repr(client)
