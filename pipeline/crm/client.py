"""An async retailCRM v5 client shaped like httpx: keyword-only, injectable transport."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal
from urllib.parse import quote

import httpx
import qs_codec as qs
from pydantic import BaseModel, SecretStr

from pipeline.crm.errors import CRMTransportError, error_from_response
from pipeline.crm.models import (
    CallEventResult,
    CallsUploadResult,
    Credentials,
    Customer,
    CustomersPage,
    GroupsPage,
    IntegrationModule,
    ManagerLookup,
    ModuleEditResult,
    OrderCreated,
    OrdersPage,
    StatusGroup,
    TasksPage,
    User,
    UsersPage,
)
from pipeline.crm.ratelimit import CRM_GENERAL_RPS, CRM_TELEPHONY_RPS, SlidingWindowLimiter
from schemas.crm import (
    CallEventPayload,
    CallUpload,
    CustomerPayload,
    IntegrationModulePayload,
    OrderPayload,
    TaskPayload,
)

__all__ = ["MAX_CALLS_PER_UPLOAD", "PAGE_LIMITS", "RequestObserver", "RetailCRMClient"]

MAX_CALLS_PER_UPLOAD = 50
PAGE_LIMITS = (20, 50, 100)
USER_STATUSES = ("free", "busy", "dinner", "break")
# (method, outcome, seconds, waited_for_rate_limit) after every request; feeds the metrics.
RequestObserver = Callable[[str, str, float, float], None]
Verb = Literal["GET", "POST"]
Params = Mapping[str, Any]


def _wire_scalar(value: Any) -> Any:
    # retailCRM reads booleans as 1/0 (the PHP client's NumericBoolean).
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, Mapping):
        return {k: _wire_scalar(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_wire_scalar(v) for v in value]
    return value


def encode_query(params: Params) -> str:
    """PHP-style brackets: filter[ids][]=1&filter[ids][]=2&filter[active]=1."""
    return str(qs.encode(_wire_scalar(dict(params)),
                         qs.EncodeOptions(list_format=qs.ListFormat.BRACKETS)))


def encode_form(fields: Params) -> dict[str, str]:
    """Scalars as plain fields; every nested structure JSON-encoded into one field."""
    form: dict[str, str] = {}
    for name, value in fields.items():
        if value is None:
            continue
        if isinstance(value, BaseModel):
            value = value.model_dump(mode="json", by_alias=True, exclude_none=True)
        elif isinstance(value, list) and value and isinstance(value[0], BaseModel):
            value = [v.model_dump(mode="json", by_alias=True, exclude_none=True) for v in value]
        if isinstance(value, Mapping | list):
            form[name] = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        else:
            form[name] = str(_wire_scalar(value))
    return form


class RetailCRMClient:
    """One portal, one key. Every method maps to one retailCRM call and raises from `errors`.

    Requests are paced per key: at most 10 in any second, 40 for /telephony methods.
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
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._key = api_key if isinstance(api_key, SecretStr) else SecretStr(api_key)
        self._http = httpx.AsyncClient(transport=transport, timeout=timeout)
        self._general = SlidingWindowLimiter(general_rps)
        self._telephony = SlidingWindowLimiter(telephony_rps)
        self._observer = observer

    def __repr__(self) -> str:
        return f"RetailCRMClient(base_url={self.base_url!r}, api_key=**********)"

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> RetailCRMClient:
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
        prefix = "/api/v5/" if versioned else "/api/"
        url = self.base_url + prefix + path.lstrip("/")
        if params:
            url += "?" + encode_query(params)
        limiter = self._telephony if path.startswith("telephony/") else self._general
        waited = await limiter.acquire()
        started = time.monotonic()
        outcome = "error"
        try:
            try:
                response = await self._http.request(
                    verb, url, headers={"X-API-KEY": self._key.get_secret_value()},
                    data=encode_form(form) if form is not None else None,
                )
            except httpx.TimeoutException as exc:
                outcome = "timeout"
                raise CRMTransportError(f"retailCRM {method}: timed out ({type(exc).__name__})",
                                        method=method) from None
            except httpx.TransportError as exc:
                outcome = "transport_error"
                raise CRMTransportError(f"retailCRM {method}: {type(exc).__name__}",
                                        method=method) from None
            body = _json_or_none(response)
            if response.is_success and body is not None and body.get("success") is True:
                outcome = "success"
                return body
            error = error_from_response(
                method=method, status=response.status_code, body=body,
                is_html=response.headers.get("content-type", "").startswith("text/html")
                or response.text.lstrip().startswith("<"),
            )
            outcome = type(error).__name__
            raise error
        finally:
            if self._observer is not None:
                self._observer(method, outcome, time.monotonic() - started, waited)

    # -- /api (unversioned) -------------------------------------------------------------------

    async def credentials(self) -> Credentials:
        body = await self.request("GET", "credentials", method="/api/credentials", versioned=False)
        return Credentials.model_validate(body)

    # -- users ---------------------------------------------------------------------------------

    async def users(self, *, filter: Params | None = None, page: int = 1,
                    limit: int = 100) -> UsersPage:
        body = await self.request("GET", "users", method="/api/users",
                                  params=_page(filter, page, limit))
        return UsersPage.model_validate(body)

    async def user(self, user_id: int) -> User:
        body = await self.request("GET", f"users/{user_id}", method="/api/users/{id}")
        return User.model_validate(body["user"])

    async def set_user_status(self, user_id: int, status: str) -> None:
        if status not in USER_STATUSES:
            raise ValueError(f"user status must be one of {', '.join(USER_STATUSES)}")
        await self.request("POST", f"users/{user_id}/status", method="/api/users/{id}/status",
                           form={"status": status})

    async def user_groups(self, *, page: int = 1, limit: int = 100) -> GroupsPage:
        body = await self.request("GET", "user-groups", method="/api/user-groups",
                                  params=_page(None, page, limit))
        return GroupsPage.model_validate(body)

    # -- telephony -----------------------------------------------------------------------------

    async def telephony_manager(self, phone: str, *, details: bool = True,
                                ignore_status: bool = True) -> ManagerLookup:
        body = await self.request(
            "GET", "telephony/manager", method="/api/telephony/manager",
            params={"phone": phone, "details": details, "ignoreStatus": ignore_status})
        return ManagerLookup.model_validate(body)

    async def upload_calls(self, calls: list[CallUpload]) -> CallsUploadResult:
        if not calls:
            raise ValueError("upload_calls needs at least one call")
        if len(calls) > MAX_CALLS_PER_UPLOAD:
            raise ValueError(f"retailCRM takes at most {MAX_CALLS_PER_UPLOAD} calls per upload")
        body = await self.request("POST", "telephony/calls/upload",
                                  method="/api/telephony/calls/upload", form={"calls": calls})
        return CallsUploadResult.model_validate(body)

    async def call_event(self, event: CallEventPayload) -> CallEventResult:
        body = await self.request("POST", "telephony/call/event",
                                  method="/api/telephony/call/event", form={"event": event})
        return CallEventResult.model_validate(body)

    # -- customers -----------------------------------------------------------------------------

    async def customers(self, *, filter: Params | None = None, page: int = 1,
                        limit: int = 100) -> CustomersPage:
        body = await self.request("GET", "customers", method="/api/customers",
                                  params=_page(filter, page, limit))
        return CustomersPage.model_validate(body)

    async def customer(self, external_id: str, *, by: Literal["externalId", "id"] = "externalId",
                       site: str | None = None) -> Customer:
        body = await self.request(
            "GET", f"customers/{_segment(external_id)}", method="/api/customers/{externalId}",
            params=_drop_none({"by": by, "site": site}))
        return Customer.model_validate(body["customer"])

    async def create_customer(self, customer: CustomerPayload, *, site: str | None = None) -> int:
        body = await self.request("POST", "customers/create", method="/api/customers/create",
                                  form={"customer": customer, "site": site})
        return int(body["id"])

    async def edit_customer(self, external_id: str, customer: CustomerPayload, *,
                            by: Literal["externalId", "id"] = "externalId",
                            site: str | None = None) -> int:
        body = await self.request(
            "POST", f"customers/{_segment(external_id)}/edit",
            method="/api/customers/{externalId}/edit",
            form={"customer": customer, "by": by, "site": site})
        return int(body["id"])

    # -- orders, tasks, references -------------------------------------------------------------

    async def orders(self, *, filter: Params | None = None, page: int = 1,
                     limit: int = 100) -> OrdersPage:
        body = await self.request("GET", "orders", method="/api/orders",
                                  params=_page(filter, page, limit))
        return OrdersPage.model_validate(body)

    async def create_order(self, order: OrderPayload, *, site: str | None = None) -> OrderCreated:
        body = await self.request("POST", "orders/create", method="/api/orders/create",
                                  form={"order": order, "site": site})
        return OrderCreated.model_validate(body)

    async def tasks(self, *, filter: Params | None = None, page: int = 1,
                    limit: int = 100) -> TasksPage:
        body = await self.request("GET", "tasks", method="/api/tasks",
                                  params=_page(filter, page, limit))
        return TasksPage.model_validate(body)

    async def create_task(self, task: TaskPayload, *, site: str | None = None) -> int:
        body = await self.request("POST", "tasks/create", method="/api/tasks/create",
                                  form={"task": task, "site": site})
        return int(body["id"])

    async def status_groups(self) -> dict[str, StatusGroup]:
        body = await self.request("GET", "reference/status-groups",
                                  method="/api/reference/status-groups")
        groups = body.get("statusGroups") or {}
        return {code: StatusGroup.model_validate(g) for code, g in groups.items()}

    # -- integration modules -------------------------------------------------------------------

    async def integration_module(self, code: str) -> IntegrationModule:
        body = await self.request("GET", f"integration-modules/{_segment(code)}",
                                  method="/api/integration-modules/{code}")
        return IntegrationModule.model_validate(body["integrationModule"])

    async def edit_integration_module(self, module: IntegrationModulePayload) -> ModuleEditResult:
        body = await self.request(
            "POST", f"integration-modules/{_segment(module.code)}/edit",
            method="/api/integration-modules/{code}/edit", form={"integrationModule": module})
        return ModuleEditResult.model_validate(body)


def _page(filter: Params | None, page: int, limit: int) -> dict[str, Any]:
    if limit not in PAGE_LIMITS:
        raise ValueError(f"retailCRM page limit must be one of {PAGE_LIMITS}")
    if page < 1:
        raise ValueError("pages start at 1")
    params: dict[str, Any] = {"limit": limit, "page": page}
    if filter:
        params["filter"] = dict(filter)
    return params


def _drop_none(params: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None}


def _segment(value: str) -> str:
    return quote(value, safe="")


def _json_or_none(response: httpx.Response) -> dict[str, Any] | None:
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return body if isinstance(body, dict) else None
