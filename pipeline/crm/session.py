"""One retailCRM key's requests: pacing, a deadline, answers read within a cap, errors raised."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal, Self, TypeVar

import httpx
from pydantic import SecretStr, ValidationError

from pipeline.crm.errors import CRMAPIError, CRMTransportError
from pipeline.crm.ratelimit import CRM_GENERAL_RPS, CRM_TELEPHONY_RPS, Pacing
from pipeline.crm.transport import PORTAL
from pipeline.crm.wire import (
    encode_query,
    error_for,
    form_body,
    json_object,
    malformed,
    read_capped,
)
from pipeline.secrets import scrub_json

__all__ = ["HALT", "MAX_RESPONSE_BYTES", "CRMSession", "Halted", "Params", "RequestObserver",
           "Verb"]

# The largest answers the pipeline asks for (100 users or tasks a page) are a few hundred KB; a
# page of 100 full orders about 1 MB. Anything far past that is a broken or hostile portal.
MAX_RESPONSE_BYTES = 4 * 1024 * 1024
# (method, outcome, seconds, waited_for_rate_limit) after every request; feeds the metrics.
RequestObserver = Callable[[str, str, float, float], None]
Verb = Literal["GET", "POST"]
Params = Mapping[str, Any]
T = TypeVar("T")
# The answer is decompressed here, within the cap, so only encodings zlib reads are asked for.
ACCEPT_ENCODING = "gzip, deflate"
HEADERS = {"Accept": "application/json", "Accept-Encoding": ACCEPT_ENCODING,
           "User-Agent": "callsync"}
FORM_HEADERS = {**HEADERS, "Content-Type": "application/x-www-form-urlencoded"}
# Asked once a request has its place in the pacing, which it may have waited for, just before it
# leaves: True stops it there (`Halted`). The delivery steps set it to their tenant's health, so
# a key found dead (or a portal found down) meanwhile by another request is not asked.
HALT: contextvars.ContextVar[Callable[[], bool] | None] = contextvars.ContextVar(
    "callsync_halt", default=None)


class Halted(Exception):
    """A request not sent: `HALT` said so after its wait for a place in the pacing."""


class CRMSession:
    """One portal, one key: sends a request and reads its answer; `RetailCRMClient` names them.

    Requests are paced per key: at most 10 in any second, 40 for /telephony methods. `timeout`
    bounds each whole request (the pacing wait before it aside), and no answer is read past
    `max_response_bytes`, so a slow or flooding portal costs only its own tenant.
    """

    def __init__(
        self,
        *,
        base_url: str,
        api_key: SecretStr | str,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 10.0,
        general_rps: int = CRM_GENERAL_RPS,
        telephony_rps: int = CRM_TELEPHONY_RPS,
        observer: RequestObserver | None = None,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        pacing: Pacing | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.max_response_bytes = max_response_bytes
        self._key = api_key if isinstance(api_key, SecretStr) else SecretStr(api_key)
        # Requests go to the transport as they are: an `httpx.AsyncClient` on top added a
        # cookie jar a portal could fill, redirects, auth and header merging nobody uses here,
        # and about 90 µs of CPU a request (a pop-up's whole way costs about 2 ms).
        self._transport = transport if transport is not None else httpx.AsyncHTTPTransport()
        self._timeouts = httpx.Timeout(timeout).as_dict()
        # Shared by the portal's other keys where given (`Pacing`); `*_rps` make one otherwise.
        pacing = pacing if pacing is not None else Pacing(general_rps, telephony_rps)
        self._general = pacing.general
        self._telephony = pacing.telephony
        self._observer = observer

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r}, api_key=**********)"

    async def aclose(self) -> None:
        # As httpx's client does; the shared transport's `aclose` leaves it open for the others.
        await self._transport.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def request(
        self,
        verb: Verb,
        path: str,
        *,
        method: str,
        params: Params | None = None,
        form: Params | None = None,
        versioned: bool = True,
    ) -> dict[str, Any]:
        """Send one call; `method` is its name as key permissions list it (/api/users/{id})."""
        return await self._call(_as_is, verb, path, method=method, params=params, form=form,
                                versioned=versioned)

    async def _call(self, parse: Callable[[dict[str, Any]], T], verb: Verb, path: str, *,
                    method: str, params: Params | None = None, form: Params | None = None,
                    versioned: bool = True) -> T:
        """Send one call and `parse` its success answer; what does not parse is malformed."""
        prefix = "/api/v5/" if versioned else "/api/"
        url = self.base_url + prefix + path.lstrip("/")
        if params:
            url += "?" + encode_query(params)
        content = (form_body(form) if form else b"") or None  # a form of only None: no body
        limiter = self._telephony if path.startswith("telephony/") else self._general
        slot, waited = await limiter.reserve()
        # From here every way out ends the slot (`Slot.ended`): one never ended would hold its
        # place in the window for good.
        halt = HALT.get()
        if halt is not None and halt():
            slot.ended(time.monotonic())
            raise Halted(method)  # its place is left to lapse: a second at most
        started = time.monotonic()

        async def trace(event: str, info: Mapping[str, Any]) -> None:
            # When it had really left: its headers or body written (or failing), not just
            # begun, since the loop may run other work between. The window counts from the
            # last of these, or from the answer if that is sooner.
            if ".send_request_" in event and not event.endswith(".started"):
                slot.sent(time.monotonic())
            elif event.endswith("receive_response_headers.complete"):
                slot.answered(time.monotonic())  # ... and arrived before this answer
        outcome = "error"
        try:
            try:
                # httpx's timeouts bound each read; a reply dripping a byte at a time needs this.
                async with asyncio.timeout(self.timeout):
                    headers = {**(HEADERS if content is None else FORM_HEADERS),
                               "X-API-KEY": self._key.get_secret_value()}
                    request = httpx.Request(
                        verb, url if params else _parsed(url), headers=headers, content=content,
                        extensions={"trace": trace, PORTAL: self.base_url,
                                    "timeout": self._timeouts})
                    response = await self._transport.handle_async_request(request)
                    try:
                        raw = await read_capped(response, cap=self.max_response_bytes,
                                                 method=method)
                    finally:
                        await response.aclose()  # the connection goes back to its pool
            except (TimeoutError, httpx.TimeoutException) as exc:
                outcome = "timeout"
                cause = type(exc).__name__ if isinstance(exc, httpx.TimeoutException) else \
                    f"deadline {self.timeout:g}s"
                raise CRMTransportError(f"retailCRM {method}: timed out ({cause})",
                                        method=method) from None
            except httpx.TransportError as exc:
                outcome = "transport_error"
                raise CRMTransportError(f"retailCRM {method}: {type(exc).__name__}",
                                        method=method) from None
            body, kind = json_object(raw)
            if not (response.is_success and body is not None and body.get("success") is True):
                # A portal may echo the key in errorMsg or errors: never into an exception.
                secrets = [self._key.get_secret_value()]
                try:
                    scrubbed = scrub_json(body, secrets)
                except RecursionError:  # read, but deeper than the scrub can walk
                    scrubbed = None
                if scrubbed is None and body is not None:
                    kind = "nested too deep to read"
                raise error_for(method, response, scrubbed, kind, raw)
            try:
                result = parse(body)
            except ValidationError as exc:
                # `from None`: the pydantic error quotes the answer's values.
                raise malformed(method, response.status_code, exc) from None
            outcome = "success"
            return result
        except CRMAPIError as exc:
            outcome = type(exc).__name__
            raise
        finally:
            slot.ended(time.monotonic())  # counts from now if it was not seen to leave
            if self._observer is not None:
                self._observer(method, outcome, time.monotonic() - started, waited)


@functools.lru_cache(maxsize=512)
def _parsed(url: str) -> httpx.URL:
    """A URL without a query, parsed once: httpx's parse checks it a character at a time (3.9 %
    of a busy worker's main thread sending pop-ups at 500/s, py-spy). The URLs asked most
    (pop-ups, uploads, tasks) are a handful per tenant; 512 keep about 330 KB."""
    return httpx.URL(url)


def _as_is(body: dict[str, Any]) -> dict[str, Any]:
    return body
