"""The double's hostile answers: errors, dropped connections, malformed, huge, dripping."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from pipeline.devtools.crmdouble.state import Fault

__all__ = ["body_of", "drip", "replaced_answer"]

CHUNK = 64 * 1024
DRIP_STEPS = 50


async def replaced_answer(request: web.Request, fault: Fault) -> tuple[int, web.StreamResponse]:
    """What the fault answers instead of the request's own answer."""
    if fault.disconnect:
        if request.transport is not None:
            request.transport.close()
        return 0, web.Response(status=500)
    if fault.huge_bytes:
        return 200, await _huge(request, fault.huge_bytes)
    if fault.status is not None:
        status, body = fault.status, {"success": False,
                                      "errorMsg": fault.error_msg or "Internal Server Error"}
    else:  # malformed: the envelope says success, the method's fields are missing
        status, body = 200, {"success": True}
    if fault.drip_seconds:
        return status, await drip(request, status, json.dumps(body).encode(),
                                  "application/json", fault.drip_seconds)
    return status, web.json_response(body, status=status)


async def drip(request: web.Request, status: int, body: bytes, content_type: str,
               seconds: float) -> web.StreamResponse:
    """Send `body` in small pieces spread over `seconds`: every read gets a byte or a few
    well within any per-read timeout, the whole answer takes as long as it takes."""
    response = web.StreamResponse(status=status)
    response.content_type = content_type
    steps = max(1, min(len(body), DRIP_STEPS))
    size = -(-len(body) // steps)
    try:
        await response.prepare(request)
        for start in range(0, len(body), size):
            await asyncio.sleep(seconds / steps)
            await response.write(body[start:start + size])
        await response.write_eof()
    except ConnectionError:
        pass  # the client gave up on it, as it should
    return response


async def _huge(request: web.Request, size: int) -> web.StreamResponse:
    """A well-formed success answer of `size` bytes, chunked (no Content-Length to refuse by)."""
    response = web.StreamResponse(status=200)
    response.content_type = "application/json"
    head, tail = b'{"success": true, "padding": "', b'"}'
    filler = b"x" * CHUNK
    left = max(0, size - len(head) - len(tail))
    try:
        await response.prepare(request)
        await response.write(head)
        while left > 0:
            piece = filler[:left]
            await response.write(piece)
            left -= len(piece)
        await response.write(tail)
        await response.write_eof()
    except ConnectionError:
        pass
    return response


def body_of(response: web.Response) -> tuple[bytes, str]:
    """The bytes and content type of an answer built in memory."""
    body: Any = response.body
    return (bytes(body) if body is not None else b""), response.content_type
