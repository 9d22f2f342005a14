"""One connection pool and one TLS context for every tenant's client.

An `httpx.AsyncClient` of its own per tenant builds an SSL context and a pool each (about
0.8 MiB and 40 ms of CPU): with thousands of tenants that is most of a worker's memory. The
clients share this transport instead; closing a client leaves it open for the others, and its
owner closes it once, at shutdown.
"""

from __future__ import annotations

import httpx

__all__ = ["SharedTransport"]

# Each tenant's lane makes one request at a time: the pool bounds how many run at once in all.
DEFAULT_LIMITS = httpx.Limits(max_connections=512, max_keepalive_connections=128,
                              keepalive_expiry=30.0)


class SharedTransport(httpx.AsyncBaseTransport):
    def __init__(self, inner: httpx.AsyncBaseTransport | None = None) -> None:
        self._inner = inner or httpx.AsyncHTTPTransport(limits=DEFAULT_LIMITS)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        """A client closing: the pool stays for the other clients (see `close`)."""

    async def close(self) -> None:
        await self._inner.aclose()
