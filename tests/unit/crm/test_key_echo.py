"""A portal that echoes the API key in its error answer: the key never reaches an exception."""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import quote, quote_plus

import httpx
import pytest

from pipeline.crm import errors as e
from pipeline.crm.client import RetailCRMClient

KEY = "s3cr3t+key/value="
FORMS = (KEY, quote(KEY, safe=""), quote_plus(KEY), base64.b64encode(KEY.encode()).decode())


def everything(exc: e.CRMAPIError) -> str:
    parts: list[Any] = [str(exc), exc.error_msg, exc.errors, exc.args]
    if isinstance(exc, e.PartialUpload):
        parts += [exc.uploaded, exc.failed]
    return repr(parts)


@pytest.mark.parametrize(("status", "body", "error"), [
    (400, {"success": False, "errorMsg": f"Invalid request for key {KEY}",
           "errors": {"apiKey": quote(KEY, safe=""), KEY: base64.b64encode(KEY.encode()).decode()}},
     e.ValidationFailed),
    (400, {"success": False, "errorMsg": "Errors in the entity format",
           "errors": [f"key {quote_plus(KEY)} rejected"]}, e.ValidationFailed),
    (500, {"success": False, "errorMsg": f"upstream said {KEY}"}, e.CRMServerError),
    (460, {"success": False, "errorMsg": "partial", "uploadedCustomers": [KEY],
           "failedCustomers": [{"key": KEY}]}, e.PartialUpload),
    (403, {"success": False, "errorMsg": 'Wrong "apiKey" value.', "errors": {"got": KEY}},
     e.InvalidApiKey),
])
async def test_the_key_is_scrubbed_from_every_error_text(status: int, body: dict[str, Any],
                                                         error: type[e.CRMAPIError]) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=body)

    async with RetailCRMClient(base_url="https://acme.retailcrm.ru", api_key=KEY,
                               transport=httpx.MockTransport(answer)) as crm:
        with pytest.raises(error) as raised:
            await crm.credentials()
    text = everything(raised.value)
    assert "**********" in text
    for form in FORMS:
        assert form not in text, form
