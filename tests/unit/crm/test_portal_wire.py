"""A portal's bytes on a real socket, read by the worker's transport (aiohttp under httpx): what
breaks on the wire is a transport error of the portal's tenant, never anything else."""

from __future__ import annotations

import asyncio
import gzip
import json
import ssl
from asyncio import StreamReader as Reader
from asyncio import StreamWriter as Writer
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx
import pytest
import trustme
from pydantic import SecretStr

from pipeline.crm import errors as e
from pipeline.crm.client import RetailCRMClient
from pipeline.crm.transport import SharedTransport, transport_error
from tests.waiting import wait_until

KEY = "k3y-on-the-wire"
USERS = json.dumps({"success": True, "users": [], "pagination": {
    "limit": 20, "totalCount": 0, "currentPage": 1, "totalPageCount": 1}}).encode()

Serve = Callable[[Reader, Writer, "Portal"], Awaitable[None]]


@dataclass
class Portal:
    """A scripted server: what it read, how many connections it took, which are still open."""

    requests: list[bytes] = field(default_factory=list)
    connections: int = 0
    open_now: int = 0

    async def read_request(self, reader: Reader) -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        request = head + (await reader.readexactly(length) if length else b"")
        self.requests.append(request)
        return request


def answer(body: bytes, *, status: bytes = b"200 OK", headers: bytes = b"") -> bytes:
    return (b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\n" + headers
            + b"Content-Length: %d\r\n\r\n" % len(body) + body)


@asynccontextmanager
async def portal(serve: Serve) -> AsyncIterator[tuple[Portal, str]]:
    state = Portal()

    async def handle(reader: Reader, writer: Writer) -> None:
        state.connections += 1
        state.open_now += 1
        try:
            await serve(reader, writer, state)
            await writer.drain()
            await reader.read()  # until the client closes its side
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            state.open_now -= 1
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield state, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/acme/"
    finally:
        server.close()
        await server.wait_closed()


@asynccontextmanager
async def crm(url: str, *, deadline: float = 5.0, max_response_bytes: int = 4 * 1024 * 1024,
              seen: list[str] | None = None) -> AsyncIterator[RetailCRMClient]:
    transport = SharedTransport()

    def observe(method: str, outcome: str, seconds: float, waited: float) -> None:
        if seen is not None:
            seen.append(outcome)

    client = RetailCRMClient(base_url=url, api_key=SecretStr(KEY), transport=transport,
                             timeout=deadline, max_response_bytes=max_response_bytes,
                             observer=observe)
    try:
        yield client
    finally:
        await transport.close()


async def forever(reader: Reader, writer: Writer, state: Portal) -> None:
    while True:
        await state.read_request(reader)
        writer.write(answer(USERS, headers=b"Set-Cookie: session=abc; Path=/\r\n"))


async def test_a_portal_keeps_one_connection_and_its_cookies_never_come_back() -> None:
    async with portal(forever) as (state, url), \
            crm(url.replace("127.0.0.1", "localhost")) as client:  # a jar keeps no IP's cookies
        for _ in range(3):
            await client.users()
    assert state.connections == 1, "kept alive between requests"
    assert len(state.requests) == 3
    later = state.requests[1].lower()
    assert b"cookie" not in later
    assert b"x-api-key: " + KEY.encode() in later
    assert b"accept-encoding: gzip, deflate" in later


async def test_the_pacing_hears_when_a_request_left_and_when_its_answer_came() -> None:
    heard: list[str] = []

    async def trace(event: str, info: object) -> None:
        heard.append(event)

    async with portal(forever) as (_, url):
        transport = SharedTransport()
        try:
            response = await transport.handle_async_request(httpx.Request(
                "POST", url + "api/v5/tasks/create", content=b"task=%7B%7D",
                extensions={"trace": trace}))
            await response.aread()
            await response.aclose()
        finally:
            await transport.close()
    assert any(".send_request_" in event for event in heard)
    assert heard[-1] == "http11.receive_response_headers.complete"


def answering(raw: bytes, *, then_close: bool = True) -> Serve:
    async def serve(reader: Reader, writer: Writer, state: Portal) -> None:
        await state.read_request(reader)
        writer.write(raw)
        await writer.drain()
        if then_close:
            writer.close()
    return serve


@pytest.mark.parametrize(("raw", "error"), [
    (b"", "ReadError"),  # closed without a word
    (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", "RemoteProtocolError"),  # not HTTP at all
    (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"{" * 10, "RemoteProtocolError"),
    (b"HTTP/1.1 200 OK\r\nX-Flood: " + b"a" * 100_000 + b"\r\n\r\n", "RemoteProtocolError"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nnot a chunk\r\n",
     "RemoteProtocolError"),
], ids=["closed", "not-http", "body-cut-short", "header-flood", "bad-chunks"])
async def test_what_breaks_on_the_wire_is_a_transport_error(raw: bytes, error: str) -> None:
    seen: list[str] = []
    async with portal(answering(raw)) as (_, url), crm(url, seen=seen) as client:
        with pytest.raises(e.CRMTransportError) as caught:
            await client.users()
    assert str(caught.value) == f"retailCRM /api/users: {error}"
    assert caught.value.retryable and caught.value.__cause__ is None
    assert seen == ["transport_error"]


async def test_a_refused_connection_is_a_connect_error() -> None:
    async with portal(forever) as (_, url):
        pass  # closed: nothing listens there now
    async with crm(url) as client:
        with pytest.raises(e.CRMTransportError, match="ConnectError"):
            await client.users()


async def test_a_redirect_is_not_followed() -> None:
    raw = answer(b"", status=b"302 Found", headers=b"Location: http://127.0.0.1:1/steal\r\n")
    async with portal(answering(raw, then_close=False)) as (state, url), crm(url) as client:
        with pytest.raises(e.RetailCRMError) as caught:
            await client.users()
    assert not isinstance(caught.value, e.CRMTransportError)
    assert len(state.requests) == 1


async def test_a_dripping_answer_is_cut_at_the_deadline_and_its_connection_closed() -> None:
    async def drip(reader: Reader, writer: Writer, state: Portal) -> None:
        await state.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        for _ in range(1000):  # real time on purpose: the drip is the fault the deadline cuts
            writer.write(b" ")
            await writer.drain()
            await asyncio.sleep(0.05)

    seen: list[str] = []
    async with portal(drip) as (state, url), crm(url, deadline=0.3, seen=seen) as client:
        with pytest.raises(e.CRMTransportError, match=r"timed out \(deadline 0.3s\)"):
            await client.users()
        await wait_until(lambda: state.open_now == 0, "the dripping connection closed")
    assert seen == ["timeout"]


async def test_a_flood_is_refused_at_the_cap_and_its_connection_not_reused() -> None:
    async def flood(reader: Reader, writer: Writer, state: Portal) -> None:
        await state.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"x" * 65536
        for _ in range(64):  # 4 MiB offered against a 1 MiB cap
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            await writer.drain()
        await state.read_request(reader)  # a second request on this connection would land here
        writer.write(answer(USERS))

    async with portal(flood) as (state, url), crm(url, max_response_bytes=1024 * 1024) as client:
        with pytest.raises(e.CRMResponseTooLarge):
            await client.users()
        await wait_until(lambda: state.open_now == 0, "the flooding connection closed")
    assert len(state.requests) == 1


async def test_a_compressed_answer_comes_through_as_sent_and_is_inflated_within_the_cap() -> None:
    packed = gzip.compress(USERS)
    raw = answer(packed, headers=b"Content-Encoding: gzip\r\n")
    async with portal(answering(raw, then_close=False)) as (_, url), crm(url) as client:
        page = await client.users()
    assert page.users == []
    bomb = gzip.compress(b"[" + b" " * (8 * 1024 * 1024) + b"]")
    raw = answer(bomb, headers=b"Content-Encoding: gzip\r\n")
    async with portal(answering(raw, then_close=False)) as (_, url), \
            crm(url, max_response_bytes=1024 * 1024) as client:
        with pytest.raises(e.CRMResponseTooLarge):
            await client.users()


def test_transport_errors_go_by_the_failure_underneath() -> None:
    import aiohttp

    # httpx_aiohttp names a dropped connection a connect timeout; the cause decides here.
    dropped = httpx.ConnectTimeout("Server disconnected")
    dropped.__cause__ = aiohttp.ServerDisconnectedError()
    assert type(transport_error(dropped)) is httpx.ReadError
    late = httpx.TimeoutException("")
    late.__cause__ = aiohttp.SocketTimeoutError()
    assert type(transport_error(late)) is httpx.ReadTimeout
    assert type(transport_error(aiohttp.ConnectionTimeoutError())) is httpx.ConnectTimeout
    assert type(transport_error(ConnectionResetError())) is httpx.ReadError
    assert str(transport_error(aiohttp.ClientPayloadError("secret body"))) == \
        "ClientPayloadError"


@asynccontextmanager
async def tls_portal(certified_for: str) -> AsyncIterator[tuple[trustme.CA, str]]:
    """A portal over TLS at 127.0.0.1 whose certificate, from a CA of the test's own, names
    `certified_for`."""
    ca = trustme.CA()
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(certified_for).configure_cert(served)

    async def handle(reader: Reader, writer: Writer) -> None:
        try:
            await forever(reader, writer, Portal())
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=served)
    try:
        yield ca, f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}/acme/"
    finally:
        server.close()
        await server.wait_closed()


def trusting(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


async def test_a_portal_over_tls_is_read_when_its_certificate_checks_out() -> None:
    async with tls_portal("127.0.0.1") as (ca, url):
        transport = SharedTransport(ssl_context=trusting(ca))
        try:
            client = RetailCRMClient(base_url=url, api_key=SecretStr(KEY), transport=transport)
            assert (await client.users()).users == []
        finally:
            await transport.close()


@pytest.mark.parametrize("case", ["unknown-ca", "other-host"])
async def test_a_certificate_that_does_not_check_out_is_refused(case: str) -> None:
    # A self-made certificate (the production context trusts certifi's roots only), or one
    # that names another host: a connect error of the portal's tenant, nothing read or sent.
    async with tls_portal("127.0.0.1" if case == "unknown-ca" else "portal.example") as (ca, url):
        transport = SharedTransport(ssl_context=None if case == "unknown-ca" else trusting(ca))
        try:
            client = RetailCRMClient(base_url=url, api_key=SecretStr(KEY), transport=transport)
            with pytest.raises(e.CRMTransportError, match="ConnectError"):
                await client.users()
        finally:
            await transport.close()
