"""One TLS context for every tenant's client, and a small connection pool per portal.

An `httpx.AsyncClient` of its own per tenant builds an SSL context and a pool each (about
0.8 MiB and 40 ms of CPU): with thousands of tenants that is most of a worker's memory. The
clients share this transport instead: one SSL context, made once. Its pools are one per portal
(the client names its portal in the request's `PORTAL` extension): httpcore looks at every
connection of a pool on every request (a system call each, to see whether an idle one was
closed by the server), so one pool for all portals made each request cost as many calls as
there were idle connections — a third of a busy worker's CPU. A portal's pool unused for
`idle_seconds` is closed. Closing a client leaves the transport open for the others; its owner
closes it once, at shutdown.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable

import httpx

__all__ = ["PORTAL", "SharedTransport"]

# The request extension that names the portal (its base URL) the request is for.
PORTAL = "callsync.portal"
# A tenant's lane makes one request at a time; a replay, a roster sync or a command may add one.
PORTAL_LIMITS = httpx.Limits(max_connections=8, max_keepalive_connections=2,
                             keepalive_expiry=30.0)
IDLE_SECONDS = 600.0


class SharedTransport(httpx.AsyncBaseTransport):
    def __init__(self, inner: httpx.AsyncBaseTransport | None = None, *,
                 idle_seconds: float = IDLE_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        # `inner` (tests: a MockTransport) takes every request as it is.
        self._inner = inner
        self._ssl: ssl.SSLContext | None = None
        self._pools: dict[str, httpx.AsyncHTTPTransport] = {}
        self._used: dict[str, float] = {}
        self.idle_seconds = idle_seconds
        self._clock = clock

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._inner is not None:
            return await self._inner.handle_async_request(request)
        return await self._pool(request).handle_async_request(request)

    def _pool(self, request: httpx.Request) -> httpx.AsyncHTTPTransport:
        portal = str(request.extensions.get(PORTAL) or request.url.copy_with(
            path="/", query=None, fragment=None))
        now = self._clock()
        self._used[portal] = now
        pool = self._pools.get(portal)
        if pool is None:
            if self._ssl is None:
                self._ssl = httpx.create_ssl_context()
            pool = self._pools[portal] = httpx.AsyncHTTPTransport(verify=self._ssl,
                                                                  limits=PORTAL_LIMITS)
        return pool

    @property
    def pools(self) -> int:
        return len(self._pools)

    async def sweep(self) -> int:
        """Close the pools of portals nobody asked for in `idle_seconds`; how many."""
        now = self._clock()
        idle = [p for p, used in self._used.items() if now - used > self.idle_seconds]
        for portal in idle:
            del self._used[portal]
            pool = self._pools.pop(portal, None)
            if pool is not None:
                await pool.aclose()
        return len(idle)

    async def release(self, portal: str) -> bool:
        """Close one portal's pool now (its connections with it); False if it had none. The
        next request to the portal opens a new one."""
        self._used.pop(portal, None)
        pool = self._pools.pop(portal, None)
        if pool is None:
            return False
        await pool.aclose()
        return True

    async def aclose(self) -> None:
        """A client closing: the pools stay for the other clients (see `close`)."""

    async def close(self) -> None:
        pools, self._pools = list(self._pools.values()), {}
        self._used.clear()
        if self._inner is not None:
            await self._inner.aclose()
        for pool in pools:
            await pool.aclose()
