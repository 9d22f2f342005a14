"""An async retailCRM v5 client shaped like httpx: keyword-only, injectable transport."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ValidationError

from pipeline.crm.errors import PartialUpload
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
    SettingsResult,
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
from pipeline.crm.session import MAX_RESPONSE_BYTES, CRMSession, Params, RequestObserver
from pipeline.crm.wire import PAGE_LIMITS, drop_none, malformed, page_params, path_segment
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
    "MAX_CALLS_PER_UPLOAD", "MAX_PER_UPLOAD", "MAX_RESPONSE_BYTES", "MAX_TASK_PAGES", "PAGE_LIMITS",
    "RequestObserver", "RetailCRMClient",
]

MAX_CALLS_PER_UPLOAD = 50
MAX_PER_UPLOAD = 50  # customers/upload, orders/upload
MAX_TASK_PAGES = 20  # how far `find_task` reads
USER_STATUSES = ("free", "busy", "dinner", "break")


class RetailCRMClient(CRMSession):
    """One portal, one key. Every method maps to one retailCRM call and raises from `errors`.

    Pacing, the deadline and the answer's cap are `CRMSession`'s (session.py).
    """

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

    async def find_task(self, task: TaskPayload, marker: str) -> int | None:
        """The id of a task of `task`'s text whose commentary holds `marker` (one an earlier try
        made), reading up to MAX_TASK_PAGES pages of 100: a caller's many missed calls have one
        text. Not by performer: the try that made it (another worker, before a partition moved)
        may have given it to another one (the customer's manager was not known yet, or the
        mapping changed)."""
        page, pages = 1, 1
        while page <= min(pages, MAX_TASK_PAGES):
            found = await self.tasks(filter={"text": task.text}, page=page, limit=100)
            match = next((t for t in found.tasks if marker in (t.commentary or "")), None)
            if match is not None:
                return match.id
            page, pages = page + 1, found.pagination.totalPageCount
        return None

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

    async def account_timezone(self) -> str | None:
        """The account's time zone (`settings.timezone.value`); not among the setup guide's 16
        methods."""
        found = await self._call(SettingsResult.model_validate, "GET", "settings",
                                 method="/api/settings")
        return found.settings.timezone.value if found.settings.timezone else None

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

