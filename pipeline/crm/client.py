"""An async retailCRM v5 client shaped like httpx: keyword-only, injectable transport."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeVar

import httpx
from pydantic import SecretStr, ValidationError

from pipeline.crm.errors import (
    CRMAPIError,
    CRMTransportError,
    PartialUpload,
)
from pipeline.crm.models import (
    CallEventResult,
    CallsUploadResult,
    Created,
    Credentials,
    Customer,
    CustomerResult,
    CustomersPage,
    GroupsPage,
    IntegrationModule,
    IntegrationModuleResult,
    ManagerLookup,
    ModuleEditResult,
    OrderCreated,
    OrdersPage,
    Site,
    SitesResult,
    StatusGroup,
    StatusGroupsResult,
    TasksPage,
    UploadResult,
    User,
    UserResult,
    UsersPage,
)
from pipeline.crm.ratelimit import CRM_GENERAL_RPS, CRM_TELEPHONY_RPS, SlidingWindowLimiter
from pipeline.crm.transport import PORTAL
from pipeline.crm.wire import (
    PAGE_LIMITS,
    drop_none,
    encode_form,
    encode_query,
    error_for,
    json_object,
    malformed,
    page_params,
    path_segment,
    read_capped,
)
from pipeline.secrets import scrub_json
from schemas.crm import (
    CallEventPayload,
    CallUpload,
    CustomerPayload,
    IntegrationModulePayload,
    OrderPayload,
    TaskEdit,
    TaskPayload,
)

__all__ = [
    "MAX_CALLS_PER_UPLOAD", "MAX_PER_UPLOAD", "MAX_RESPONSE_BYTES", "PAGE_LIMITS",
    "RequestObserver", "RetailCRMClient",
]

MAX_CALLS_PER_UPLOAD = 50
MAX_PER_UPLOAD = 50  # customers/upload, orders/upload
# The largest answers the pipeline asks for (100 users or tasks a page) are a few hundred KB; a
# page of 100 full orders about 1 MB. Anything far past that is a broken or hostile portal.
MAX_RESPONSE_BYTES = 4 * 1024 * 1024
USER_STATUSES = ("free", "busy", "dinner", "break")
# (method, outcome, seconds, waited_for_rate_limit) after every request; feeds the metrics.
RequestObserver = Callable[[str, str, float, float], None]
Verb = Literal["GET", "POST"]
Params = Mapping[str, Any]
T = TypeVar("T")
# The answer is decompressed here, within the cap, so only encodings zlib reads are asked for.
ACCEPT_ENCODING = "gzip, deflate"
class RetailCRMClient:
    """One portal, one key. Every method maps to one retailCRM call and raises from `errors`.

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
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.max_response_bytes = max_response_bytes
        self._key = api_key if isinstance(api_key, SecretStr) else SecretStr(api_key)
        self._http = httpx.AsyncClient(transport=transport, timeout=timeout,
                                       headers={"Accept-Encoding": ACCEPT_ENCODING})
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
        limiter = self._telephony if path.startswith("telephony/") else self._general
        slot, waited = await limiter.reserve()
        started = time.monotonic()

        async def trace(event: str, info: Mapping[str, Any]) -> None:
            if event.endswith("send_request_headers.started"):
                slot.sent(time.monotonic())  # the window counts from when it really left
        outcome = "error"
        try:
            try:
                # httpx's timeouts bound each read; a reply dripping a byte at a time needs this.
                async with asyncio.timeout(self.timeout):
                    async with self._http.stream(
                        verb, url, headers={"X-API-KEY": self._key.get_secret_value()},
                        data=encode_form(form) if form is not None else None,
                        extensions={"trace": trace, PORTAL: self.base_url},
                    ) as response:
                        raw = await read_capped(response, cap=self.max_response_bytes,
                                                 method=method)
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
                raise error_for(method, response, scrub_json(body, secrets), kind, raw)
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
            if self._observer is not None:
                self._observer(method, outcome, time.monotonic() - started, waited)

    # -- /api (unversioned) -------------------------------------------------------------------

    async def credentials(self) -> Credentials:
        return await self._call(Credentials.model_validate, "GET", "credentials",
                                method="/api/credentials", versioned=False)

    # -- users ---------------------------------------------------------------------------------

    async def users(self, *, filter: Params | None = None, page: int = 1,
                    limit: int = 100) -> UsersPage:
        return await self._call(UsersPage.model_validate, "GET", "users", method="/api/users",
                                params=page_params(filter, page, limit))

    async def user(self, user_id: int) -> User:
        found = await self._call(UserResult.model_validate, "GET", f"users/{user_id}",
                                 method="/api/users/{id}")
        return found.user

    async def set_user_status(self, user_id: int, status: str) -> None:
        if status not in USER_STATUSES:
            raise ValueError(f"user status must be one of {', '.join(USER_STATUSES)}")
        await self.request("POST", f"users/{user_id}/status", method="/api/users/{id}/status",
                           form={"status": status})

    async def user_groups(self, *, page: int = 1, limit: int = 100) -> GroupsPage:
        return await self._call(GroupsPage.model_validate, "GET", "user-groups",
                                method="/api/user-groups", params=page_params(None, page, limit))

    # -- telephony -----------------------------------------------------------------------------

    async def telephony_manager(self, phone: str, *, details: bool = True,
                                ignore_status: bool = True) -> ManagerLookup:
        return await self._call(
            ManagerLookup.model_validate, "GET", "telephony/manager",
            method="/api/telephony/manager",
            params={"phone": phone, "details": details, "ignoreStatus": ignore_status})

    async def upload_calls(self, calls: list[CallUpload]) -> CallsUploadResult:
        if not calls:
            raise ValueError("upload_calls needs at least one call")
        if len(calls) > MAX_CALLS_PER_UPLOAD:
            raise ValueError(f"retailCRM takes at most {MAX_CALLS_PER_UPLOAD} calls per upload")
        return await self._call(CallsUploadResult.model_validate, "POST", "telephony/calls/upload",
                                method="/api/telephony/calls/upload", form={"calls": calls})

    async def call_event(self, event: CallEventPayload) -> CallEventResult:
        return await self._call(CallEventResult.model_validate, "POST", "telephony/call/event",
                                method="/api/telephony/call/event", form={"event": event})

    # -- customers -----------------------------------------------------------------------------

    async def customers(self, *, filter: Params | None = None, page: int = 1,
                        limit: int = 100) -> CustomersPage:
        return await self._call(CustomersPage.model_validate, "GET", "customers",
                                method="/api/customers", params=page_params(filter, page, limit))

    async def customer(self, external_id: str, *, by: Literal["externalId", "id"] = "externalId",
                       site: str | None = None) -> Customer:
        found = await self._call(
            CustomerResult.model_validate, "GET", f"customers/{path_segment(external_id)}",
            method="/api/customers/{externalId}", params=drop_none({"by": by, "site": site}))
        return found.customer

    async def create_customer(self, customer: CustomerPayload, *, site: str | None = None) -> int:
        created = await self._call(Created.model_validate, "POST", "customers/create",
                                   method="/api/customers/create",
                                   form={"customer": customer, "site": site})
        return created.id

    async def edit_customer(self, external_id: str, customer: CustomerPayload, *,
                            by: Literal["externalId", "id"] = "externalId",
                            site: str | None = None) -> int:
        edited = await self._call(
            Created.model_validate, "POST", f"customers/{path_segment(external_id)}/edit",
            method="/api/customers/{externalId}/edit",
            form={"customer": customer, "by": by, "site": site})
        return edited.id

    async def upload_customers(self, customers: list[CustomerPayload], *,
                               site: str | None = None) -> UploadResult:
        """Up to 50 customers in one request. A 460 (some failed) is an answer, not an error:
        the result lists what was made and what failed."""
        return await self._upload("customers", customers, site)

    async def _upload(self, kind: Literal["customers", "orders"],
                      items: list[CustomerPayload] | list[OrderPayload],
                      site: str | None) -> UploadResult:
        if not items:
            raise ValueError(f"upload_{kind} needs at least one item")
        if len(items) > MAX_PER_UPLOAD:
            raise ValueError(f"retailCRM takes at most {MAX_PER_UPLOAD} {kind} per upload")
        name = kind[:-1].capitalize() + "s"  # uploadedCustomers, failedOrders

        def parse(body: dict[str, Any]) -> UploadResult:
            return UploadResult.of(body.get(f"uploaded{name}"), body.get(f"failed{name}"))

        try:
            return await self._call(parse, "POST", f"{kind}/upload", method=f"/api/{kind}/upload",
                                    form={kind: items, "site": site})
        except PartialUpload as partial:
            try:
                return UploadResult.of(partial.uploaded, partial.failed, partial.errors)
            except ValidationError as exc:
                raise malformed(partial.method, 460, exc) from None

    # -- orders, tasks, references -------------------------------------------------------------

    async def orders(self, *, filter: Params | None = None, page: int = 1,
                     limit: int = 100) -> OrdersPage:
        return await self._call(OrdersPage.model_validate, "GET", "orders", method="/api/orders",
                                params=page_params(filter, page, limit))

    async def create_order(self, order: OrderPayload, *, site: str | None = None) -> OrderCreated:
        return await self._call(OrderCreated.model_validate, "POST", "orders/create",
                                method="/api/orders/create", form={"order": order, "site": site})

    async def upload_orders(self, orders: list[OrderPayload], *,
                            site: str | None = None) -> UploadResult:
        """Up to 50 orders in one request; a 460 comes back as the result, as for customers."""
        return await self._upload("orders", orders, site)

    async def tasks(self, *, filter: Params | None = None, page: int = 1,
                    limit: int = 100) -> TasksPage:
        return await self._call(TasksPage.model_validate, "GET", "tasks", method="/api/tasks",
                                params=page_params(filter, page, limit))

    async def create_task(self, task: TaskPayload, *, site: str | None = None) -> int:
        created = await self._call(Created.model_validate, "POST", "tasks/create",
                                   method="/api/tasks/create", form={"task": task, "site": site})
        return created.id

    async def edit_task(self, task_id: int, task: TaskEdit, *, site: str | None = None) -> None:
        """Change a task (a comment, `complete`); not among the setup guide's 16 methods."""
        await self.request("POST", f"tasks/{task_id}/edit", method="/api/tasks/{id}/edit",
                           form={"task": task, "site": site})

    async def status_groups(self) -> dict[str, StatusGroup]:
        found = await self._call(StatusGroupsResult.model_validate, "GET",
                                 "reference/status-groups", method="/api/reference/status-groups")
        return dict(found.statusGroups)

    async def sites(self) -> dict[str, Site]:
        """The portal's shops, by code."""
        found = await self._call(SitesResult.model_validate, "GET", "reference/sites",
                                 method="/api/reference/sites")
        return dict(found.sites)

    # -- integration modules -------------------------------------------------------------------

    async def integration_module(self, code: str) -> IntegrationModule:
        found = await self._call(IntegrationModuleResult.model_validate, "GET",
                                 f"integration-modules/{path_segment(code)}",
                                 method="/api/integration-modules/{code}")
        return found.integrationModule

    async def edit_integration_module(self, module: IntegrationModulePayload) -> ModuleEditResult:
        return await self._call(
            ModuleEditResult.model_validate, "POST",
            f"integration-modules/{path_segment(module.code)}/edit",
            method="/api/integration-modules/{code}/edit", form={"integrationModule": module})


def _as_is(body: dict[str, Any]) -> dict[str, Any]:
    return body
