"""The retailCRM double as an aiohttp server: portals under /{portal}/api, admin under /_admin."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from typing import Any

import qs_codec as qs
from aiohttp import web

from pipeline.crm.ratelimit import CRM_GENERAL_RPS, CRM_TELEPHONY_RPS
from pipeline.devtools.crmdouble.admin import admin_routes
from pipeline.devtools.crmdouble.faults import body_of, drip, replaced_answer
from pipeline.devtools.crmdouble.handlers import Call, Reply
from pipeline.devtools.crmdouble.routes import match
from pipeline.devtools.crmdouble.state import DoubleState, Portal

__all__ = ["CRMDouble", "build_app"]

STATE_KEY = web.AppKey("state", DoubleState)
LIMITS_KEY = web.AppKey("limits", tuple)
ARRIVED_KEY = web.RequestKey("arrived", float)  # the rate-limit clock when it came in
RATE_LIMIT_PAGE = (
    "<html>\r\n<head><title>503 Service Temporarily Unavailable</title></head>\r\n<body>\r\n"
    "<center><h1>503 Service Temporarily Unavailable</h1></center>\r\n<hr><center>nginx</center>"
    "\r\n</body>\r\n</html>\r\n")
NGINX_405 = ("<html>\r\n<head><title>405 Not Allowed</title></head>\r\n<body>\r\n"
             "<center><h1>405 Not Allowed</h1></center>\r\n<hr><center>nginx</center>\r\n"
             "</body>\r\n</html>\r\n")


def _json(status: int, body: dict[str, Any]) -> web.Response:
    return web.json_response(body, status=status)


def _over_limit(state: DoubleState, portal: str, key: str, client: str, telephony: bool,
                limits: tuple[int, int], now: float) -> bool:
    """Sliding one-second windows per key and per client address ("from one IP"), each kept
    apart for /telephony (10/s and 40/s). A request is counted, and refused over either
    limit, as it arrives (`now`, stamped before its body was read), before any injected fault
    delays or replaces its answer."""
    cls = "telephony" if telephony else "general"
    windows = [state.windows.setdefault((f"{portal}\0key\0{key}", cls), deque()),
               state.windows.setdefault((f"{portal}\0ip\0{client}", cls), deque())]
    limit = limits[1] if telephony else limits[0]
    for window in windows:
        while window and now - window[0] >= 1.0:
            window.popleft()
    if any(len(window) >= limit for window in windows):
        return True
    for window in windows:
        window.append(now)
    return False


async def _params(request: web.Request) -> dict[str, Any]:
    params: dict[str, Any] = dict(qs.decode(request.query_string)) if request.query_string else {}
    if request.method == "POST":
        form = await request.post()
        params.update({k: v for k, v in form.items() if isinstance(v, str)})
    return params


async def _api(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    request[ARRIVED_KEY] = state.clock()
    portal_name = request.match_info["portal"]
    portal = state.portals.get(portal_name)
    if portal is None:
        if request.method != "GET":  # the portal's nginx answers non-GET with an HTML page
            return web.Response(status=405, text=NGINX_405, content_type="text/html")
        return _json(404, {"success": False, "errorMsg": "Account does not exist."})
    rest = request.match_info["rest"]
    versioned = rest.startswith("v5/")
    path = rest[3:] if versioned else rest  # aiohttp has decoded it once, as a portal does
    found = match(request.method, path, versioned=versioned)
    if isinstance(found, str):
        return _json(405 if found == "Method Not Allowed" else 404,
                     {"success": False, "errorMsg": found})
    route, path_args = found
    params = await _params(request)
    key_value = request.headers.get("X-API-KEY") or str(params.pop("apiKey", "") or "")
    if not key_value:
        state.count(portal_name, "<none>", 403)
        return _json(403, {"success": False, "errorMsg": '"apiKey" is missing.'})
    key = portal.keys.get(key_value)
    if key is None or not key.active:
        state.count(portal_name, key.label if key else "<unknown>", 403)
        return _json(403, {"success": False, "errorMsg": 'Wrong "apiKey" value.'})
    telephony = route.method.startswith("/api/telephony/")
    response: web.StreamResponse
    if _over_limit(state, portal.name, key_value, request.remote or "", telephony,
                   request.app[LIMITS_KEY], request[ARRIVED_KEY]):
        status, response = 503, web.Response(status=503, text=RATE_LIMIT_PAGE,
                                             content_type="text/html")
    else:
        status, response = await _answer(request, state, portal, key_value, route, path_args,
                                         params)
    state.count(portal_name, key.label, status)
    state.by_method[(portal_name, route.method)] = \
        state.by_method.get((portal_name, route.method), 0) + 1
    return response


async def _answer(request: web.Request, state: DoubleState, portal: Portal, key_value: str,
                  route: Any, path_args: dict[str, str], params: dict[str, Any]
                  ) -> tuple[int, web.StreamResponse]:
    fault = state.take_fault(portal.name, route.method)
    if fault is not None and not fault.apply_first:
        if fault.latency:
            await asyncio.sleep(fault.latency)
        if fault.replaces_answer:
            return await replaced_answer(request, fault)
    status, response = await _carry_out(request, state, portal, key_value, route, path_args,
                                         params)
    if fault is None:
        return status, response
    if fault.apply_first:  # the request was carried out; its answer is late, lost or garbage
        if fault.latency:
            await asyncio.sleep(fault.latency)
        if fault.replaces_answer:
            return await replaced_answer(request, fault)
    if fault.drip_seconds:
        body, content_type = body_of(response)
        return status, await drip(request, status, body, content_type, fault.drip_seconds)
    return status, response


async def _carry_out(request: web.Request, state: DoubleState, portal: Portal, key_value: str,
                     route: Any, path_args: dict[str, str], params: dict[str, Any]
                     ) -> tuple[int, web.Response]:
    key = portal.keys[key_value]
    if route.method != "/api/credentials" and route.method not in key.methods:
        return 403, _json(403, {"success": False, "errorMsg": "Access denied."})
    try:
        status, body = await route.handler(Call(portal, key, params, path_args))
    except Reply as reply:
        status, body = reply.status, reply.body
    return status, _json(status, body)


def build_app(state: DoubleState | None = None, *, general_rps: int = CRM_GENERAL_RPS,
              telephony_rps: int = CRM_TELEPHONY_RPS) -> web.Application:
    app = web.Application()
    app[STATE_KEY] = state or DoubleState()
    app[LIMITS_KEY] = (general_rps, telephony_rps)
    app.router.add_routes(admin_routes(app[STATE_KEY]))
    app.router.add_route("*", "/{portal}/api/{rest:.*}", _api)
    return app


class CRMDouble:
    """Runs the double on 127.0.0.1, in the caller's event loop or in a thread of its own."""

    def __init__(self, *, port: int = 0, general_rps: int = CRM_GENERAL_RPS,
                 telephony_rps: int = CRM_TELEPHONY_RPS) -> None:
        self.state = DoubleState()
        self._app = build_app(self.state, general_rps=general_rps, telephony_rps=telephony_rps)
        self._port = port
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.url = ""

    def portal_url(self, portal: str) -> str:
        return f"{self.url}/{portal}"

    async def start(self) -> str:
        self._runner = web.AppRunner(self._app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self._port)
        await site.start()
        server = site._server
        assert server is not None  # noqa: S101 - set by start()
        port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def start_in_thread(self) -> str:
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(self.start())
            ready.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self.stop())
            self._loop.close()

        self._thread = threading.Thread(target=run, name="crm-double", daemon=True)
        self._thread.start()
        if not ready.wait(30):
            raise RuntimeError("the retailCRM double did not start")
        return self.url

    def stop_thread(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(30)
            self._thread = None

    async def serve_forever(self) -> None:
        await self.start()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.Event().wait()
        await self.stop()
