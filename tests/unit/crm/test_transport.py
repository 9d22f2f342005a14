"""The shared transport: one TLS context, a pool per portal, idle pools closed."""

from __future__ import annotations

import asyncio

import httpx
from pydantic import SecretStr

from pipeline.crm.client import RetailCRMClient
from pipeline.crm.transport import PORTAL, SharedTransport
from tests.waiting import wait_until


def request(portal: str, path: str = "api/v5/users") -> httpx.Request:
    return httpx.Request("GET", f"{portal}{path}", extensions={PORTAL: portal})


async def test_each_portal_has_a_pool_of_its_own_and_all_share_one_tls_context() -> None:
    """httpcore looks at every connection of a pool on each request (a system call for each
    idle one): one pool for all portals made a busy worker spend a third of its CPU there."""
    now = [0.0]
    transport = SharedTransport(clock=lambda: now[0], idle_seconds=600)
    acme = transport._pool(request("https://acme.retailcrm.ru/"))
    assert transport._pool(request("https://acme.retailcrm.ru/", "api/v5/tasks")) is acme
    beta = transport._pool(request("https://beta.retailcrm.ru/"))
    # The double serves every portal on one host and port, under a path of its own.
    double_a = transport._pool(request("http://127.0.0.1:8089/acme/"))
    double_b = transport._pool(request("http://127.0.0.1:8089/beta/"))
    assert len({id(acme), id(beta), id(double_a), id(double_b)}) == 4
    assert transport.pools == 4
    assert acme.ssl_context is beta.ssl_context is not None
    now[0] = 300.0
    transport._pool(request("https://acme.retailcrm.ru/"))
    now[0] = 700.0
    assert await transport.sweep() == 3, "only acme was asked for in the last 10 minutes"
    assert transport.pools == 1 and transport._pool(request("https://acme.retailcrm.ru/")) is acme
    await transport.close()
    assert transport.pools == 0


async def test_the_client_names_its_portal_on_every_request() -> None:
    seen: list[object] = []

    def answer(req: httpx.Request) -> httpx.Response:
        seen.append(req.extensions.get(PORTAL))
        return httpx.Response(200, json={"success": True, "credentials": [], "scopes": [],
                                         "siteAccess": "access_full", "sitesAvailable": []})

    transport = SharedTransport(httpx.MockTransport(answer))
    async with RetailCRMClient(base_url="https://acme.retailcrm.ru/", api_key=SecretStr("k"),
                               transport=transport) as client:
        await client.credentials()
    assert seen == [client.base_url]
    await transport.close()



CREDENTIALS = (b'{"success": true, "credentials": [], "scopes": [], "siteAccess": "access_full", '
               b'"sitesAvailable": []}')


async def test_a_released_portal_closes_its_connections_and_the_others_keep_theirs() -> None:
    """The roster sync asks every tenant's portal: with 10,000 of them, kept connections
    would be 10,000 sockets. A released portal's connections close at once (seen from the
    server's side, over real sockets); the next request to it opens a new one."""
    open_now: set[asyncio.StreamWriter] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        open_now.add(writer)
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(CREDENTIALS), CREDENTIALS))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            open_now.discard(writer)
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport = SharedTransport()
    acme, beta = (RetailCRMClient(base_url=f"http://127.0.0.1:{port}/{name}/",
                                  api_key=SecretStr("k"), transport=transport)
                  for name in ("acme", "beta"))
    try:
        await acme.credentials()
        await beta.credentials()
        await wait_until(lambda: len(open_now) == 2, "a connection to each portal")
        assert await transport.release(acme.base_url)
        await wait_until(lambda: len(open_now) == 1, "acme's connection closed")
        assert not await transport.release(acme.base_url), "released already"
        assert transport.pools == 1
        await acme.credentials()
        await wait_until(lambda: len(open_now) == 2, "a new connection to acme")
    finally:
        await transport.close()
        server.close()
        await server.wait_closed()
