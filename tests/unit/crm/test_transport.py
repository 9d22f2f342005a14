"""The shared transport: one TLS context, a pool per portal, idle pools closed."""

from __future__ import annotations

import httpx
from pydantic import SecretStr

from pipeline.crm.client import RetailCRMClient
from pipeline.crm.transport import PORTAL, SharedTransport


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
    assert acme._pool._ssl_context is beta._pool._ssl_context is not None
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
