"""A broken or hostile portal costs only its own tenant: typed errors, a deadline, a size cap."""

from __future__ import annotations

import asyncio
import gzip
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from pipeline.crm import errors as e
from pipeline.crm.client import RetailCRMClient
from pipeline.crm.models import (
    ManagerLookup,
    ModuleEditResult,
    Order,
    SitesResult,
    StatusGroupsResult,
)
from pipeline.delivery.errorpolicy import DeadLetter, Retry, decide
from pipeline.secrets import scrub_json
from schemas.crm import CustomerPayload, IntegrationModulePayload

KEY = "s3cr3t-key-value"
SECRET = "ivan.petrov@example.com"  # stands for anything private an answer may carry
PAGE = {"limit": 20, "totalCount": 1, "currentPage": 1, "totalPageCount": 1}
MODULE = IntegrationModulePayload(code="ringostat", integrationCode="ringostat", active=True)
MiB = 1024 * 1024

Call = Callable[[RetailCRMClient], Awaitable[Any]]


class Body(httpx.AsyncByteStream):
    """An answer sent chunk by chunk, counting what the client pulled."""

    def __init__(self, chunks: Iterable[bytes], *, pause: float = 0.0) -> None:
        self.chunks, self.pause = chunks, pause
        self.sent = 0
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            if self.pause:  # real time on purpose: a slow drip is the fault the deadline cuts
                await asyncio.sleep(self.pause)
            self.sent += len(chunk)
            yield chunk

    async def aclose(self) -> None:
        self.closed = True


def replying(status: int, content: bytes | Body, *, headers: dict[str, str] | None = None,
             seen: list[httpx.Request] | None = None) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        headers_ = {"content-type": "application/json", **(headers or {})}
        if isinstance(content, Body):
            return httpx.Response(status, headers=headers_, stream=content)
        return httpx.Response(status, headers=headers_, content=content)
    return httpx.MockTransport(handler)


def client(transport: httpx.MockTransport, **kw: Any) -> RetailCRMClient:
    return RetailCRMClient(base_url="https://acme.retailcrm.ru", api_key=KEY,
                           transport=transport, **kw)


def assert_clean(err: e.RetailCRMError, *private: str) -> None:
    """Neither the key nor the answer's values reach the message, its errors or its chain."""
    shown = str(err) + repr(err.args) + repr(getattr(err, "errors", ""))
    for value in (KEY, SECRET, *private):
        assert value not in shown
    assert err.__cause__ is None and err.__suppress_context__


MISSING: list[tuple[str, Call, dict[str, Any], str]] = [
    ("credentials", lambda c: c.credentials(), {"scopes": [SECRET]}, "credentials (missing)"),
    ("user_groups", lambda c: c.user_groups(), {}, "pagination (missing); groups (missing)"),
    ("users", lambda c: c.users(), {"pagination": PAGE, "users": [{"id": 1}, {"email": SECRET}]},
     "users[1].id (missing)"),
    ("users_wrong_type", lambda c: c.users(), {"pagination": PAGE, "users": SECRET},
     "users (list_type)"),
    ("edit_integration_module", lambda c: c.edit_integration_module(MODULE), {"info": SECRET},
     "info (dict_type)"),
    ("user", lambda c: c.user(27), {"users": [{"id": 27}]}, "user (missing)"),
    ("customer", lambda c: c.customer("x"), {"customer": {"email": SECRET}},
     "customer.id (missing)"),
    ("create_customer", lambda c: c.create_customer(CustomerPayload(externalId="x")),
     {"id": SECRET}, "id (int_parsing)"),
    ("integration_module", lambda c: c.integration_module("ringostat"), {},
     "integrationModule (missing)"),
    # A status group's code is a key of the answer, so it is masked like any other value.
    ("status_groups", lambda c: c.status_groups(), {"statusGroups": {SECRET: {"name": "x"}}},
     "statusGroups.*.code (missing)"),
]


@pytest.mark.parametrize(("name", "call", "reply", "problem"), MISSING,
                         ids=[m[0] for m in MISSING])
async def test_a_success_answer_that_does_not_parse_is_malformed(
        name: str, call: Call, reply: dict[str, Any], problem: str) -> None:
    seen: list[tuple[str, str]] = []
    transport = replying(200, json.dumps({"success": True, **reply}).encode())
    async with client(transport, observer=lambda m, o, s, w: seen.append((m, o))) as crm:
        with pytest.raises(e.CRMMalformedResponse) as caught:
            await call(crm)
    err = caught.value
    assert type(err) is e.CRMMalformedResponse and err.retryable
    assert problem in str(err) and f"retailCRM {err.method}: malformed answer" in str(err)
    assert err.status == 200
    assert_clean(err)
    assert seen == [(err.method, "CRMMalformedResponse")]  # not counted as a success


@pytest.mark.parametrize(("content", "what"), [
    (b"[]", "is an array"),
    (b'[{"success": true}]', "is an array"),
    (b'"success"', "is a string"),
    (b"null", "is null"),
    (b"42", "is a number"),
    (b"", "is empty"),
    (b'{"success": true, "users": [', "is not JSON"),
    (b"\xff\xfe{not utf-8}", "is not JSON"),
    (b"[" * 200_000, "is not JSON"),  # deeper than the parser's recursion limit
    (b"<html><body>Welcome to nginx!</body></html>", "is not JSON"),
    (b'{"users": []}', "has no success flag"),
    (b'{"success": "yes"}', "has no success flag"),
])
async def test_a_2xx_answer_that_is_no_json_object_is_malformed(content: bytes,
                                                                what: str) -> None:
    async with client(replying(200, content)) as crm:
        with pytest.raises(e.CRMMalformedResponse, match=f"answer {what}") as caught:
            await crm.users()
    assert type(caught.value) is e.CRMMalformedResponse
    assert caught.value.method == "/api/users"
    assert "Welcome" not in str(caught.value)


@pytest.mark.parametrize(("status", "content", "expected"), [
    (503, b"[]", e.RateLimited),
    (500, b'"oops"', e.CRMServerError),
    (200, b'{"success": false}', e.ValidationFailed),  # the portal's own (terse) refusal
    (201, b'{"errorMsg": "Not found"}', e.NotFound),
])
async def test_error_answers_keep_their_classes_whatever_the_body(
        status: int, content: bytes, expected: type[e.RetailCRMError]) -> None:
    async with client(replying(status, content)) as crm:
        with pytest.raises(expected):
            await crm.users()


async def test_module_edit_info_sent_as_an_empty_array_parses() -> None:
    transport = replying(200, b'{"success": true, "info": []}')
    async with client(transport) as crm:
        result = await crm.edit_integration_module(MODULE)
    assert result.info == {}


async def test_empty_arrays_where_objects_belong_parse_through_the_client() -> None:
    async with client(replying(200, b'{"success": true, "statusGroups": []}')) as crm:
        assert await crm.status_groups() == {}
    body = b'{"success": true, "manager": [], "customer": [], "links": []}'
    async with client(replying(200, body)) as crm:
        lookup = await crm.telephony_manager("+380501112233")
    assert lookup.manager is None and lookup.customer is None and lookup.links == {}


@pytest.mark.parametrize(("model", "data", "check"), [
    (ModuleEditResult, {"info": []}, lambda r: r.info == {}),
    (ManagerLookup, {"manager": [], "customer": [], "links": []},
     lambda r: r.manager is None and r.customer is None and r.links == {}),
    (ManagerLookup, {"customer": {"id": 1, "source": [], "customFields": []}},
     lambda r: r.customer.source == {} and r.customer.customFields == {}),
    (Order, {"id": 1, "customer": [], "source": []},
     lambda r: r.customer == {} and r.source == {}),
    (StatusGroupsResult, {"statusGroups": []}, lambda r: r.statusGroups == {}),
    (SitesResult, {"sites": []}, lambda r: r.sites == {}),
])
def test_php_empty_arrays_read_as_empty_objects(model: Any, data: dict[str, Any],
                                                check: Callable[[Any], bool]) -> None:
    assert check(model.model_validate(data))


def test_a_non_empty_array_where_an_object_belongs_is_still_refused() -> None:
    with pytest.raises(ValueError, match="info"):
        ModuleEditResult.model_validate({"info": ["x"]})


async def test_a_reply_dripping_bytes_is_cut_at_the_whole_request_deadline() -> None:
    seen: list[tuple[str, str]] = []
    drip = Body((b" " for _ in range(1000)), pause=0.05)  # 50 s in all; each read is quick
    started = time.monotonic()
    async with client(replying(200, drip), timeout=0.3,
                      observer=lambda m, o, s, w: seen.append((m, o))) as crm:
        with pytest.raises(e.CRMTransportError, match=r"timed out \(deadline 0.3s\)") as caught:
            await crm.users()
    assert time.monotonic() - started < 3
    assert caught.value.retryable and caught.value.method == "/api/users"
    assert 0 < drip.sent < 100 and drip.closed
    assert seen == [("/api/users", "timeout")]


async def test_the_rate_limit_wait_does_not_count_against_the_deadline() -> None:
    waits: list[float] = []
    transport = replying(200, b'{"success": true, "pagination": {"limit": 20, "totalCount": 0, '
                              b'"currentPage": 1, "totalPageCount": 1}, "users": []}')
    async with client(transport, timeout=0.3, general_rps=1,
                      observer=lambda m, o, s, w: waits.append(w)) as crm:
        await crm.users()
        await crm.users()  # waits about a second for the budget, then answers at once
    assert waits[1] > 0.3


async def test_a_huge_answer_is_refused_without_being_read() -> None:
    flood = Body(b"x" * 65536 for _ in range(160))  # 10 MiB
    seen: list[tuple[str, str]] = []
    async with client(replying(200, flood), observer=lambda m, o, s, w: seen.append((m, o))
                      ) as crm:
        with pytest.raises(e.CRMResponseTooLarge, match="exceeds 4194304 bytes") as caught:
            await crm.users()
    assert isinstance(caught.value, e.CRMMalformedResponse) and caught.value.retryable
    assert flood.sent <= 4 * MiB + 65536 and flood.closed
    assert seen == [("/api/users", "CRMResponseTooLarge")]


async def test_a_declared_length_past_the_cap_is_refused_before_reading() -> None:
    flood = Body(b"x" * 65536 for _ in range(32))
    transport = replying(200, flood, headers={"content-length": str(2 * MiB)})
    async with client(transport, max_response_bytes=MiB) as crm:
        with pytest.raises(e.CRMResponseTooLarge):
            await crm.users()
    assert flood.sent == 0


async def test_a_gzip_bomb_is_cut_at_the_cap_of_its_inflated_size() -> None:
    bomb = gzip.compress(b"[" + b" " * (64 * MiB) + b"]")  # 64 KiB on the wire
    pulled = Body(bomb[i:i + 1024] for i in range(0, len(bomb), 1024))
    transport = replying(200, pulled, headers={"content-encoding": "gzip"})
    async with client(transport, max_response_bytes=MiB) as crm:
        with pytest.raises(e.CRMResponseTooLarge, match="exceeds 1048576 bytes"):
            await crm.users()
    assert pulled.sent < len(bomb) // 4


async def test_a_compressed_answer_within_the_cap_is_read() -> None:
    body = gzip.compress(json.dumps({"success": True, "pagination": PAGE,
                                     "users": [{"id": 27}]}).encode())
    seen: list[httpx.Request] = []
    transport = replying(200, Body([body[:10], body[10:]]),
                         headers={"content-encoding": "gzip"}, seen=seen)
    async with client(transport) as crm:
        page = await crm.users()
    assert page.users[0].id == 27
    assert seen[0].headers["accept-encoding"] == "gzip, deflate"


@pytest.mark.parametrize(("encoding", "content", "what"), [
    ("gzip", b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xffgarbage", "gzip stream is corrupt"),
    ("gzip", gzip.compress(b'{"success": true}', mtime=0)[:-12],
     "gzip stream is corrupt or cut short"),
    ("br", b"\x0b\x02\x80{}\x03", "unsupported Content-Encoding"),
])
async def test_an_undecodable_answer_is_malformed(encoding: str, content: bytes,
                                                  what: str) -> None:
    transport = replying(200, Body([content]), headers={"content-encoding": encoding})
    async with client(transport) as crm:
        with pytest.raises(e.CRMMalformedResponse, match=what):
            await crm.users()


def test_a_malformed_answer_is_retried_then_parked_like_a_failing_server() -> None:
    exc = e.CRMMalformedResponse("retailCRM /api/users: malformed answer", method="/api/users")
    assert isinstance(decide(exc, attempt=1, max_attempts=3, base=0.1, cap=1.0), Retry)
    assert decide(e.CRMResponseTooLarge("x", method="/api/users"), attempt=3, max_attempts=3,
                  base=0.1, cap=1.0) == DeadLetter(reason="RetriesExhausted:CRMResponseTooLarge",
                                                   broken=False, method="/api/users")


async def test_a_portal_s_cookies_are_neither_kept_nor_sent_back() -> None:
    # A portal (or anything between) setting cookies would grow a jar per tenant and have
    # them sent with every later request of that key.
    seen: list[httpx.Request] = []
    transport = replying(200, json.dumps({"success": True, "pagination": PAGE, "users": []}
                                         ).encode(),
                         headers={"set-cookie": f"session={SECRET}; Path=/"}, seen=seen)
    async with client(transport) as crm:
        await crm.users()
        await crm.users()
    assert len(seen) == 2
    assert "cookie" not in seen[1].headers
    assert seen[1].headers["x-api-key"] == KEY and seen[1].headers["accept-encoding"]


@pytest.mark.parametrize("endless", ["user-groups", "users"])
async def test_a_roster_of_a_billion_pages_is_refused_before_they_are_read(endless: str) -> None:
    """A sync, and an operator's command that waits for it, would read for as long as the
    portal said (a billion pages at 10 a second)."""
    from pipeline.delivery.employees import MAX_ROSTER_PAGES, fetch_roster

    asked: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.path)
        pages = 10**9 if request.url.path.endswith(endless) else 1
        body: dict[str, Any] = {"success": True, "pagination": {
            "limit": 100, "totalCount": pages * 100, "currentPage": 1, "totalPageCount": pages}}
        if request.url.path.endswith("user-groups"):
            body["groups"] = [{"code": "manager", "name": "Managers", "isManager": True}]
        else:
            body["users"] = []
        return httpx.Response(200, json=body)

    crm = client(httpx.MockTransport(handler))
    with pytest.raises(e.CRMMalformedResponse,
                       match=f"reports 1000000000 pages of 100; callsync reads at most "
                             f"{MAX_ROSTER_PAGES}") as refused:
        await fetch_roster(crm, now=datetime.now(UTC))
    assert refused.value.method == f"/api/{endless}"
    assert len(asked) == (1 if endless == "user-groups" else 2)


@pytest.mark.parametrize("status", [400, 200])
async def test_an_error_answer_nested_too_deep_to_scrub_is_still_the_portals_error(
        status: int) -> None:
    """Read, but deeper than the key's scrub can walk: the error is still retailCRM's (a
    rejection, or a success answer that is no success), never a RecursionError."""
    deep = b'{"success": false, "errorMsg": "' + KEY.encode() + b'", "errors": ' \
        + b"[" * 900 + b"]" * 900 + b"}"
    async with client(replying(status, deep)) as crm:
        with pytest.raises(e.RetailCRMError) as raised:
            await crm.users()
    err = raised.value
    assert isinstance(err, e.CRMAPIError) and err.__context__ is None
    assert KEY not in str(err) + repr(err.args) + repr(err.errors)


async def test_a_name_with_half_a_surrogate_pair_is_read_with_a_question_mark() -> None:
    """JSON lets `"\\ud800"` through, which no UTF-8 text holds: a roster with such a name
    could be neither stored nor sent on."""
    body = (b'{"success": true, "users": [{"id": 7, "firstName": "Ol\\ud800ena", '
            b'"lastName": "\\ud83d\\ude00", "active": true, "groups": []}], "pagination": '
            b'{"limit": 20, "totalCount": 1, "currentPage": 1, "totalPageCount": 1}}')
    async with client(replying(200, body)) as crm:
        users = await crm.users()
    [user] = users.users
    assert (user.firstName, user.lastName) == ("Ol?ena", "\N{GRINNING FACE}")
    assert user.model_dump_json()  # storable


def test_the_forms_of_a_key_are_made_once_per_scrubbed_answer(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Made per string, a 4 MiB error answer of 290,000 entries held the event loop 2.6 s."""
    import pipeline.secrets
    from pipeline.observability.logs import secret_forms

    made: list[str] = []
    real = secret_forms

    def counting(secret: str) -> set[str]:
        made.append(secret)
        return real(secret)

    monkeypatch.setattr(pipeline.secrets, "secret_forms", counting)
    answer = {"errors": [f"item {n}: {KEY}" for n in range(1000)]}
    scrubbed = scrub_json(answer, [KEY])
    assert made == [KEY] and KEY not in json.dumps(scrubbed)
