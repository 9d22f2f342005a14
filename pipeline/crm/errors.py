"""Exceptions raised by the retailCRM client, decided by retailCRM's own `errorMsg` and status.

    RetailCRMError
    ├── CRMTransportError          connection refused/reset, timeout            retryable
    └── CRMAPIError                the portal answered with an error (status, errorMsg, errors)
        ├── CRMRetryableError                                                    retryable
        │   ├── RateLimited        503 (retailCRM's limit), 429 defensively
        │   ├── CRMServerError     any other 5xx
        │   └── CRMMalformedResponse   a 2xx answer that is no JSON object or lacks the
        │       │                      method's fields (named by path, never by value)
        │       └── CRMResponseTooLarge  an answer past the client's size cap
        ├── CRMAuthorizationError  the key cannot do this; retrying will not help
        │   ├── MissingApiKey      '"apiKey" is missing.'
        │   ├── InvalidApiKey      'Wrong "apiKey" value.' (unknown, revoked or replaced key)
        │   ├── AccessDenied       'Access denied.' (the key lacks this method; `.method` names it)
        │   └── AccountNotFound    'Account does not exist.', or an HTML 404/405 from the portal
        └── CRMRejectedError       the request or data is wrong; fix it, do not retry
            ├── ValidationFailed   'Errors in the entity format', 'Validation error', other 400s
            ├── MissingParameter   "Parameter 'x' is missing"
            ├── NotFound           'Not found', 'API method not found'
            ├── TelephonyDisabled  'Telephony not enabled[ or not supports calls upload]'
            └── PartialUpload      460: some items of a batch uploaded, some failed

No message ever carries the API key: the key travels in a header, never in a URL, and the client
scrubs it (raw, URL-encoded, base64) from an answer's errorMsg and errors before an exception is
built from them, for portals that echo it. Nor does a malformed answer's message quote the
answer: it names field paths and problems, never values.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "AccessDenied",
    "AccountNotFound",
    "CRMAPIError",
    "CRMAuthorizationError",
    "CRMMalformedResponse",
    "CRMRejectedError",
    "CRMResponseTooLarge",
    "CRMRetryableError",
    "CRMServerError",
    "CRMTransportError",
    "InvalidApiKey",
    "MissingApiKey",
    "MissingParameter",
    "NotFound",
    "PartialUpload",
    "RateLimited",
    "RetailCRMError",
    "TelephonyDisabled",
    "ValidationFailed",
    "error_from_response",
]

MSG_MISSING_KEY = '"apiKey" is missing.'
MSG_WRONG_KEY = 'Wrong "apiKey" value.'
MSG_ACCESS_DENIED = "Access denied."
MSG_NO_ACCOUNT = "Account does not exist."
MSG_NOT_FOUND = "Not found"
MSG_METHOD_NOT_FOUND = "API method not found"
MSG_ENTITY_FORMAT = "Errors in the entity format"
MSG_VALIDATION = "Validation error"
MSG_INPUT_PARAMETERS = "Errors in the input parameters"
MSG_TELEPHONY_EVENT = "Telephony not enabled"
MSG_TELEPHONY_UPLOAD = "Telephony not enabled or not supports calls upload"
MISSING_PARAMETER = re.compile(r"^Parameter '([\w\]\[_-]+)' is missing$")


class RetailCRMError(Exception):
    """Base of everything the client raises."""

    retryable: bool = False

    def __init__(self, message: str, *, method: str = "") -> None:
        super().__init__(message)
        self.method = method


class CRMTransportError(RetailCRMError):
    retryable = True


class CRMAPIError(RetailCRMError):
    def __init__(
        self,
        message: str,
        *,
        method: str = "",
        status: int = 0,
        error_msg: str | None = None,
        errors: Mapping[str, str] | Sequence[Any] | None = None,
    ) -> None:
        super().__init__(message, method=method)
        self.status = status
        self.error_msg = error_msg
        self.errors = errors if errors is not None else {}


class CRMRetryableError(CRMAPIError):
    retryable = True


class RateLimited(CRMRetryableError):
    pass


class CRMServerError(CRMRetryableError):
    pass


class CRMMalformedResponse(CRMRetryableError):
    """A glitching portal: retried, and after the retries the policy asks /api/credentials."""


class CRMResponseTooLarge(CRMMalformedResponse):
    pass


class CRMAuthorizationError(CRMAPIError):
    pass


class MissingApiKey(CRMAuthorizationError):
    pass


class InvalidApiKey(CRMAuthorizationError):
    pass


class AccessDenied(CRMAuthorizationError):
    pass


class AccountNotFound(CRMAuthorizationError):
    pass


class CRMRejectedError(CRMAPIError):
    pass


class ValidationFailed(CRMRejectedError):
    pass


class MissingParameter(CRMRejectedError):
    @property
    def parameter(self) -> str:
        match = MISSING_PARAMETER.match(self.error_msg or "")
        return match.group(1) if match else ""


class NotFound(CRMRejectedError):
    pass


class TelephonyDisabled(CRMRejectedError):
    pass


class PartialUpload(CRMRejectedError):
    """460: `uploaded` items are done; only `failed` ones need another look."""

    def __init__(self, message: str, *, uploaded: list[Any], failed: list[Any], **kw: Any) -> None:
        super().__init__(message, **kw)
        self.uploaded = uploaded
        self.failed = failed


_BY_MESSAGE: dict[str, type[CRMAPIError]] = {
    MSG_MISSING_KEY: MissingApiKey,
    MSG_WRONG_KEY: InvalidApiKey,
    MSG_ACCESS_DENIED: AccessDenied,
    MSG_NO_ACCOUNT: AccountNotFound,
    MSG_NOT_FOUND: NotFound,
    MSG_METHOD_NOT_FOUND: NotFound,
    "Method not found": NotFound,
    MSG_ENTITY_FORMAT: ValidationFailed,
    MSG_VALIDATION: ValidationFailed,
    MSG_INPUT_PARAMETERS: ValidationFailed,
    MSG_TELEPHONY_EVENT: TelephonyDisabled,
    MSG_TELEPHONY_UPLOAD: TelephonyDisabled,
}


def error_from_response(
    *, method: str, status: int, body: Mapping[str, Any] | None, is_html: bool
) -> CRMAPIError:
    """Pick the exception for a failed response. `body` is the parsed JSON, None if it was not JSON.

    The errorMsg decides first (as the PHP and Go clients do); the status decides what has no
    known message: 503/429 are the rate limit, other 5xx the server; a redirect, an HTML 404/405
    or a 404 without retailCRM's message a wrong portal (the integration breaks: its calls are
    parked and replayed once it is fixed, not refused one by one); any other answer that is no
    retailCRM answer at all a failing server.
    """
    error_msg = str(body.get("errorMsg")) if body and body.get("errorMsg") is not None else None
    errors = body.get("errors") if body else None
    if not isinstance(errors, Mapping | list):
        errors = None
    label = error_msg or f"HTTP {status}"
    text = f"retailCRM {method}: {label}"
    if isinstance(errors, Mapping) and errors:
        text += " (" + "; ".join(f"{k}: {v}" for k, v in list(errors.items())[:5]) + ")"
    kw: dict[str, Any] = {"method": method, "status": status, "error_msg": error_msg,
                          "errors": errors}
    if status == 460:
        uploaded = _list_field(body, "uploadedCustomers", "uploadedOrders")
        failed = _list_field(body, "failedCustomers", "failedOrders")
        return PartialUpload(text, uploaded=uploaded, failed=failed, **kw)
    if error_msg is not None:
        if error_msg in _BY_MESSAGE:
            return _BY_MESSAGE[error_msg](text, **kw)
        if MISSING_PARAMETER.match(error_msg):
            return MissingParameter(text, **kw)
    if status in (503, 429):
        return RateLimited(text, **kw)
    if status >= 500:
        return CRMServerError(text, **kw)
    if 300 <= status < 400:  # not followed: the address moved, and an operator must say where
        return AccountNotFound(f"retailCRM {method}: HTTP {status}, a redirect (retailCRM's API "
                               "does not redirect: is the portal's address right?)", **kw)
    if is_html and status in (404, 405):
        return AccountNotFound(f"retailCRM {method}: {MSG_NO_ACCOUNT} (HTML {status})", **kw)
    if status == 404 and error_msg is None:  # retailCRM's says "Not found"; this is no portal
        return AccountNotFound(f"retailCRM {method}: HTTP 404 without retailCRM's message (is "
                               "the portal's address right?)", **kw)
    if status == 404:
        return NotFound(text, **kw)
    if status in (401, 403):
        return CRMAuthorizationError(text, **kw)
    if body is None:  # no retailCRM answer (a proxy's page): not a verdict on the data
        return CRMServerError(f"retailCRM {method}: HTTP {status}, not a retailCRM answer", **kw)
    return ValidationFailed(text, **kw)


def _list_field(body: Mapping[str, Any] | None, *names: str) -> list[Any]:
    for name in names:
        value = (body or {}).get(name)
        if isinstance(value, list):
            return value
    return []
