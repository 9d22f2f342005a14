"""The retailCRM double as the benchmark runs it: limits of its choosing, arrival times noted."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from pipeline.devtools.bench_figures import is_call_method
from pipeline.devtools.crmdouble.server import CRMDouble

__all__ = ["UNTHROTTLED", "BenchDouble", "counts_for", "requests_with_status"]

UNTHROTTLED = 1_000_000  # requests/s per key: no 503 however fast the client asks
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class BenchDouble(CRMDouble):
    """The double's state keeps no times; an aiohttp middleware (this benchmark's, the double
    unchanged) notes when each pop-up (`telephony/call/event`, by `callExternalId`) arrived and
    when each portal's first and last call request came."""

    def __init__(self, *, general_rps: int, telephony_rps: int) -> None:
        super().__init__(general_rps=general_rps, telephony_rps=telephony_rps)
        self.popup_arrivals: dict[str, float] = {}  # callExternalId -> time.time()
        self.first_request: dict[str, float] = {}  # portal -> time.monotonic()
        self.last_request: dict[str, float] = {}
        self._app.middlewares.append(self._note_arrival)

    @web.middleware
    async def _note_arrival(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        arrived, moment = time.time(), time.monotonic()
        portal = request.match_info.get("portal")
        rest = request.match_info.get("rest", "")
        if portal is not None and is_call_method("/api/" + rest.removeprefix("v5/")):
            self.first_request.setdefault(portal, moment)
            self.last_request[portal] = moment
            if rest.endswith("telephony/call/event") and request.method == "POST":
                form = await request.post()  # aiohttp keeps it for the handler
                try:
                    event = json.loads(str(form.get("event", "")))
                    self.popup_arrivals.setdefault(str(event["callExternalId"]), arrived)
                except (ValueError, KeyError, TypeError):
                    pass
        return await handler(request)

    def span(self, portals: list[str]) -> float:
        """Seconds from the first call request of these portals to their last."""
        firsts = [self.first_request[p] for p in portals if p in self.first_request]
        lasts = [self.last_request[p] for p in portals if p in self.last_request]
        return max(lasts) - min(firsts) if firsts and lasts else float("nan")


def counts_for(double: CRMDouble, portals: list[str]) -> dict[str, int]:
    """Call requests by method, summed over these portals (a copy: later requests not in it)."""
    out: dict[str, int] = {}
    for (portal, method), n in list(double.state.by_method.items()):
        if portal in portals and is_call_method(method):
            out[method] = out.get(method, 0) + n
    return out


def requests_with_status(double: CRMDouble, portals: list[str], status: int) -> int:
    return sum(per.get(status, 0) for (portal, _), per in list(double.state.requests.items())
               if portal in portals)
