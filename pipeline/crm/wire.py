"""What goes on the wire to retailCRM and what comes back: PHP-bracket queries, JSON-in-form
fields, answers read within a cap, and the exception for an answer that is not a success."""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import qs_codec as qs
from pydantic import BaseModel, ValidationError

from pipeline.crm import models
from pipeline.crm.errors import (
    CRMAPIError,
    CRMMalformedResponse,
    CRMResponseTooLarge,
    error_from_response,
)

__all__ = ["PAGE_LIMITS", "drop_none", "encode_form", "encode_query", "error_for", "form_body",
           "json_object", "malformed", "page_params", "path_segment", "read_capped"]

Params = Mapping[str, Any]
PAGE_LIMITS = (20, 50, 100)
JSON_KINDS = {list: "an array", str: "a string", int: "a number", float: "a number",
              bool: "a boolean", type(None): "null"}
# Field names a malformed-answer message may show; any other key came from the answer itself.
FIELD_NAMES = frozenset(name for model in vars(models).values()
                        if isinstance(model, type) and issubclass(model, BaseModel)
                        for name in model.model_fields)


def _wire_scalar(value: Any) -> Any:
    # retailCRM reads booleans as 1/0 (the PHP client's NumericBoolean).
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, Mapping):
        return {k: _wire_scalar(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_wire_scalar(v) for v in value]
    return value


_BRACKETS = qs.EncodeOptions(list_format=qs.ListFormat.BRACKETS)


def encode_query(params: Params) -> str:
    """PHP-style brackets: filter[ids][]=1&filter[ids][]=2&filter[active]=1. A query of plain
    fields only (`telephony/manager`'s, for every missed call of a known caller) is the same
    with the standard library's encoding, in 4 us where qs-codec takes about 45."""
    wire = _wire_scalar(dict(params))
    if all(isinstance(v, str | int | float) for v in wire.values()):
        return urlencode(wire, quote_via=quote, safe="")
    return str(qs.encode(wire, _BRACKETS))


def encode_form(fields: Params) -> dict[str, str]:
    """Scalars as plain fields; every nested structure JSON-encoded into one field."""
    form: dict[str, str] = {}
    for name, value in fields.items():
        if value is None:
            continue
        # Models are written by pydantic's own JSON serializer: half the time of a dump to
        # Python and `json.dumps` of it (a 50-call upload: 230 -> 105 us), and the same JSON.
        if isinstance(value, BaseModel):
            form[name] = value.model_dump_json(by_alias=True, exclude_none=True)
        elif isinstance(value, list) and value and all(isinstance(v, BaseModel) for v in value):
            form[name] = "[" + ",".join(
                v.model_dump_json(by_alias=True, exclude_none=True) for v in value) + "]"
        elif isinstance(value, Mapping | list):
            form[name] = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        else:
            form[name] = str(_wire_scalar(value))
    return form


def form_body(fields: Params) -> bytes:
    """The form as the request's body (application/x-www-form-urlencoded), byte for byte what
    httpx makes of `encode_form`'s fields, without its checks of each value's type."""
    return urlencode(encode_form(fields)).encode()


def page_params(filter: Params | None, page: int, limit: int) -> dict[str, Any]:
    if limit not in PAGE_LIMITS:
        raise ValueError(f"retailCRM page limit must be one of {PAGE_LIMITS}")
    if page < 1:
        raise ValueError("pages start at 1")
    params: dict[str, Any] = {"limit": limit, "page": page}
    if filter:
        params["filter"] = dict(filter)
    return params


def drop_none(params: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None}


def path_segment(value: str) -> str:
    return quote(value, safe="")


async def read_capped(response: httpx.Response, *, cap: int, method: str) -> bytes:
    """The answer's bytes, at most `cap` of them once decompressed.

    The decompression is done here, not by httpx, so that a small gzip cannot inflate to
    gigabytes in one step before the cap is looked at.
    """
    def too_large() -> CRMResponseTooLarge:
        return CRMResponseTooLarge(f"retailCRM {method}: the answer exceeds {cap} bytes",
                                   method=method, status=response.status_code)

    if response.is_stream_consumed:  # a transport that answered from memory (MockTransport)
        if len(response.content) > cap:
            raise too_large()
        return response.content
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("identity", "gzip", "x-gzip", "deflate"):
        raise CRMMalformedResponse(f"retailCRM {method}: the answer has an unsupported "
                                   "Content-Encoding", method=method, status=response.status_code)
    # wbits MAX_WBITS|32 reads a zlib or a gzip header (servers send both as "deflate").
    inflate = None if encoding == "identity" else zlib.decompressobj(zlib.MAX_WBITS | 32)
    declared = response.headers.get("content-length", "")
    if inflate is None and declared.isdigit() and int(declared) > cap:
        raise too_large()
    chunks: list[bytes] = []
    size = 0
    try:
        async for data in response.aiter_raw():
            while data:
                if inflate is None:
                    out, data = data, b""
                else:
                    out = inflate.decompress(data, cap + 1 - size)
                    data = inflate.unconsumed_tail
                size += len(out)
                if size > cap:
                    raise too_large()
                chunks.append(out)
        if inflate is not None and not inflate.eof:  # at its end all output has been given
            raise zlib.error("truncated")
    except zlib.error:
        raise CRMMalformedResponse(f"retailCRM {method}: the answer's {encoding} stream is "
                                   "corrupt or cut short", method=method,
                                   status=response.status_code) from None
    return b"".join(chunks)


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def json_object(raw: bytes) -> tuple[dict[str, Any] | None, str]:
    """The parsed answer if it is a JSON object, else None and what it was instead."""
    if not raw.strip():
        return None, "empty"
    try:
        body = json.loads(raw)
        if _SURROGATE_ESCAPE.search(raw):
            # JSON lets a lone half of a surrogate pair through (`"\ud800"`): no UTF-8 text,
            # so the answer's names could not be stored or sent on. Each becomes a "?".
            body = json.loads(json.dumps(body, ensure_ascii=False).encode("utf-8", "replace"))
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the stack
        return None, "not JSON"
    if isinstance(body, dict):
        return body, "an object"
    return None, JSON_KINDS.get(type(body), "not an object")


def error_for(method: str, response: httpx.Response, body: dict[str, Any] | None, kind: str,
               raw: bytes) -> CRMAPIError:
    """The exception for an answer that is not a success: the portal's own error, or garbage."""
    status = response.status_code
    # A 2xx that is no retailCRM envelope; one with `success: false` or an errorMsg is an error.
    if response.is_success and (body is None or (body.get("success") is not False
                                                 and "errorMsg" not in body)):
        what = f"the answer is {kind}" if body is None else "the answer has no success flag"
        return CRMMalformedResponse(f"retailCRM {method}: {what}", method=method, status=status)
    return error_from_response(
        method=method, status=status, body=body,
        is_html=response.headers.get("content-type", "").startswith("text/html")
        or raw.lstrip().startswith(b"<"))


def malformed(method: str, status: int, exc: ValidationError) -> CRMMalformedResponse:
    """Name the fields that did not parse and why, never their values."""
    problems = [f"{_field_path(err['loc'])} ({err['type']})"
                for err in exc.errors(include_url=False, include_context=False,
                                      include_input=False)]
    shown = "; ".join(problems[:5]) + (f"; {len(problems) - 5} more" if len(problems) > 5 else "")
    return CRMMalformedResponse(f"retailCRM {method}: malformed answer: {shown}", method=method,
                                status=status, errors=problems)


def _field_path(loc: tuple[int | str, ...]) -> str:
    # Keys that are no field of ours came from the answer (a status group's code): masked.
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += ("." if path else "") + (part if part in FIELD_NAMES else "*")
    return path or "(answer)"
