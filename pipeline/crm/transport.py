"""One TLS context for every tenant's requests, and a small aiohttp connection pool per portal.

An `httpx.AsyncClient` of its own per tenant builds an SSL context and a pool each (about
0.8 MiB and 40 ms of CPU): with thousands of tenants that is most of a worker's memory. The
sessions share this transport instead: one SSL context, made once, and a pool per portal (the
session names its portal in the request's `PORTAL` extension). A portal's pool unused for
`idle_seconds` is closed. Closing a session leaves the transport open for the others; its owner
closes it once, at shutdown.

The pools are aiohttp's, under httpx's request and response (`httpx_aiohttp`): httpcore cost
about 0.4 ms of CPU a request here, a third of a busy worker's, and aiohttp about 0.12 (its HTTP
parser is compiled). What the rest of callsync sees stays httpx's: requests, responses, the
`trace` extension the pacing reads (see `_TRACE`) and the exception tree (`transport_error`).
"""

from __future__ import annotations

import contextvars
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

__all__ = ["PORTAL", "PortalTransport", "SharedTransport", "transport_error"]

# The request extension that names the portal (its base URL) the request is for.
PORTAL = "callsync.portal"
# A tenant's lane has up to 4 pop-ups or statuses under way (delivery/announcer.py), an upload
# and a general request; a replay, a roster sync or a command may add one. aiohttp keeps each
# idle connection for `keepalive_expiry`, up to the limit (it has no cap of its own for idle
# ones).
PORTAL_CONNECTIONS = 10
KEEPALIVE_SECONDS = 30.0
IDLE_SECONDS = 600.0

Trace = Callable[[str, Mapping[str, Any]], Awaitable[None]]
# aiohttp reports a request's progress to its session's trace configs, not to the request: the
# request under way in this task hands its httpx `trace` hook over here. The events are named
# as httpcore names them, so the pacing reads either.
_TRACE: contextvars.ContextVar[Trace | None] = contextvars.ContextVar("callsync_trace",
                                                                      default=None)
_FAILURES = (httpx.TransportError, aiohttp.ClientError, OSError, TimeoutError)


async def _written(_session: object, _context: object, _params: object) -> None:
    trace = _TRACE.get()
    if trace is not None:
        await trace("http11.send_request_body.complete", {})


async def _answered(_session: object, _context: object, _params: object) -> None:
    trace = _TRACE.get()
    if trace is not None:
        await trace("http11.receive_response_headers.complete", {})


def transport_error(exc: BaseException) -> httpx.TransportError:
    """httpx's exception for what failed on the wire. httpx_aiohttp's own mapping names a
    dropped connection a connect timeout; this goes by the aiohttp error underneath. Only the
    type's name is kept: aiohttp's messages quote the portal's host and its answer."""
    cause = exc.__cause__ if isinstance(exc, httpx.TransportError) and isinstance(
        exc.__cause__, _FAILURES) else exc
    name = type(cause).__name__
    if isinstance(cause, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(name)
    if isinstance(cause, TimeoutError):  # aiohttp's read timeouts are TimeoutErrors too
        return httpx.ReadTimeout(name)
    if isinstance(cause, aiohttp.ClientConnectorError):
        return httpx.ConnectError(name)
    if isinstance(cause, aiohttp.ClientResponseError | aiohttp.ClientPayloadError):
        return httpx.RemoteProtocolError(name)  # not HTTP, or a body cut or malformed
    if isinstance(cause, httpx.TransportError):
        return cause
    return httpx.ReadError(name)  # closed or reset under the request


def _signals() -> aiohttp.TraceConfig:
    signals = aiohttp.TraceConfig()
    signals.on_request_headers_sent.append(_written)
    signals.on_request_chunk_sent.append(_written)
    signals.on_request_end.append(_answered)
    signals.freeze()
    return signals


# One for every session: its signals are a kilobyte, and hold nothing of a request's.
_SIGNALS = _signals()


class _Body(httpx.AsyncByteStream):
    """The answer's body as aiohttp reads it, its failures as httpx's."""

    def __init__(self, inner: httpx.AsyncByteStream) -> None:
        self._inner = inner

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._inner:
                yield chunk
        except _FAILURES as exc:
            raise transport_error(exc) from None

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()  # back to the pool, or closed if not read to its end
        except _FAILURES as exc:
            raise transport_error(exc) from None


class PortalTransport(AiohttpTransport):
    """One portal's connections. No cookie jar (a portal's cookies are neither kept nor sent
    back), no redirects, answers handed over as they came (`wire.read_capped` inflates them
    within its cap)."""

    def __init__(self, ssl_context: ssl.SSLContext) -> None:
        # The pool's limit and keep-alive are `_session`'s: httpx_aiohttp reads its own
        # `limits` and `trust_env` only when it makes the session itself.
        super().__init__(verify=ssl_context, client=self._session)

    def _session(self) -> aiohttp.ClientSession:
        # Made at the first request: aiohttp wants the running loop.
        connector = aiohttp.TCPConnector(ssl=self.ssl_context, limit=PORTAL_CONNECTIONS,
                                         keepalive_timeout=KEEPALIVE_SECONDS)
        return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar(),
                                     trace_configs=[_SIGNALS], auto_decompress=False,
                                     trust_env=False)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        token = _TRACE.set(request.extensions.get("trace"))
        try:
            response = await super().handle_async_request(request)
        except _FAILURES as exc:
            raise transport_error(exc) from None
        finally:
            _TRACE.reset(token)
        response.stream = _Body(response.stream)  # type: ignore[arg-type]
        return response


class SharedTransport(httpx.AsyncBaseTransport):
    def __init__(self, inner: httpx.AsyncBaseTransport | None = None, *,
                 idle_seconds: float = IDLE_SECONDS, ssl_context: ssl.SSLContext | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        # `inner` (tests: a MockTransport) takes every request as it is. `ssl_context` (tests:
        # a CA of their own) is what every portal's certificate is checked against; httpx's
        # default (certifi's roots) is made at the first request otherwise.
        self._inner = inner
        self._ssl = ssl_context
        self._pools: dict[str, PortalTransport] = {}
        self._used: dict[str, float] = {}
        self.idle_seconds = idle_seconds
        self._clock = clock

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._inner is not None:
            return await self._inner.handle_async_request(request)
        return await self._pool(request).handle_async_request(request)

    def _pool(self, request: httpx.Request) -> PortalTransport:
        portal = str(request.extensions.get(PORTAL) or request.url.copy_with(
            path="/", query=None, fragment=None))
        now = self._clock()
        self._used[portal] = now
        pool = self._pools.get(portal)
        if pool is None:
            if self._ssl is None:
                self._ssl = httpx.create_ssl_context()
            pool = self._pools[portal] = PortalTransport(self._ssl)
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
