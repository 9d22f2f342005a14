"""Typed views of retailCRM v5 responses; unknown fields are kept, missing ones are None."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

__all__ = [
    "AccountSettings",
    "CallEventResult",
    "CallsUploadResult",
    "Created",
    "Credentials",
    "Customer",
    "CustomerResult",
    "CustomersPage",
    "GroupRef",
    "GroupsPage",
    "IntegrationModule",
    "IntegrationModuleResult",
    "ManagerLookup",
    "ModuleEditResult",
    "Order",
    "OrderCreated",
    "OrdersPage",
    "Pagination",
    "SettingValue",
    "SettingsResult",
    "Site",
    "SitesResult",
    "StatusGroup",
    "StatusGroupsResult",
    "Task",
    "TasksPage",
    "TelephonyManager",
    "UploadResult",
    "User",
    "UserGroup",
    "UserResult",
    "UsersPage",
]


def _empty_list_as(empty: Any) -> BeforeValidator:
    # PHP's json_encode writes an empty associative array as [] (seen: module edit `info: []`).
    return BeforeValidator(lambda value: empty if isinstance(value, list) and not value else value)


# An object retailCRM may send as [] when it is empty.
PHPObject = Annotated[dict[str, Any], _empty_list_as({})]
# An optional nested entity: [] means there is none.
PHPOptional = _empty_list_as(None)


class _Read(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class Pagination(_Read):
    limit: int
    totalCount: int
    currentPage: int
    totalPageCount: int


class GroupRef(_Read):
    id: int | None = None
    name: str | None = None
    code: str | None = None


class User(_Read):
    id: int
    active: bool = False
    email: str | None = None
    firstName: str | None = None
    lastName: str | None = None
    status: str | None = None
    online: bool | None = None
    isManager: bool | None = None
    isAdmin: bool | None = None
    groups: list[GroupRef] = Field(default_factory=list)


class UsersPage(_Read):
    pagination: Pagination
    users: list[User]


class UserGroup(_Read):
    id: int | None = None
    name: str | None = None
    code: str
    isManager: bool | None = None


class GroupsPage(_Read):
    pagination: Pagination
    groups: list[UserGroup]


class Phone(_Read):
    number: str


class Customer(_Read):
    id: int
    externalId: str | None = None
    firstName: str | None = None
    lastName: str | None = None
    phones: list[Phone] = Field(default_factory=list)
    managerId: int | None = None
    site: str | None = None
    source: PHPObject | None = None
    customFields: Annotated[dict[str, Any] | list[Any] | None, _empty_list_as({})] = None


class CustomersPage(_Read):
    pagination: Pagination
    customers: list[Customer]


class Order(_Read):
    id: int
    externalId: str | None = None
    number: str | None = None
    orderMethod: str | None = None
    managerId: int | None = None
    site: str | None = None
    status: str | None = None
    customer: PHPObject | None = None
    source: PHPObject | None = None


class OrderCreated(_Read):
    id: int
    order: Annotated[Order | None, PHPOptional] = None


class OrdersPage(_Read):
    pagination: Pagination
    orders: list[Order]


class Task(_Read):
    id: int
    text: str | None = None
    commentary: str | None = None
    datetime: str | None = None
    performerId: int | None = None
    performer: int | None = None
    phone: str | None = None
    complete: bool | None = None
    customer: PHPObject | None = None


class TasksPage(_Read):
    pagination: Pagination
    tasks: list[Task]


class TelephonyManager(_Read):
    id: int
    firstName: str | None = None
    lastName: str | None = None
    email: str | None = None
    code: str | None = None


class ManagerLookup(_Read):
    manager: Annotated[TelephonyManager | None, PHPOptional] = None
    customer: Annotated[Customer | None, PHPOptional] = None
    links: PHPObject = Field(default_factory=dict)


class CallsUploadResult(_Read):
    processedCallsCount: int = 0
    duplicateCalls: list[str] = Field(default_factory=list)


class UploadResult(_Read):
    """customers/upload, orders/upload: the ids made, by externalId, and the externalIds that
    failed (a 460 answer lists both; `errors` says why, in retailCRM's words)."""

    uploaded: dict[str, int] = Field(default_factory=dict)
    failed: list[str] = Field(default_factory=list)
    errors: list[str] = Field(default_factory=list)

    @classmethod
    def of(cls, uploaded: Any, failed: Any, errors: Any = None) -> UploadResult:
        """From the answer's lists: `[{id, externalId}]`, `[{externalId}]`; anything else in
        them is malformed (a ValidationError)."""
        made = [_UploadedItem.model_validate(item) for item in _listed(uploaded)]
        lost = [_UploadedItem.model_validate(item).externalId for item in _listed(failed)]
        notes = errors if isinstance(errors, list) else \
            [f"{k}: {v}" for k, v in errors.items()] if isinstance(errors, dict) else []
        return cls(uploaded={i.externalId: i.id for i in made if i.externalId and i.id},
                   failed=[x for x in lost if x], errors=[str(n)[:300] for n in notes[:50]])


def _listed(value: Any) -> list[Any]:
    """An answer's list, or none (what is not listed as made is looked for, then made)."""
    return value if isinstance(value, list) else []


class _UploadedItem(_Read):
    id: int | None = None
    externalId: str | None = None


class CallEventResult(_Read):
    notExistCodes: list[str] = Field(default_factory=list)
    notExistUsers: list[int] = Field(default_factory=list)


class StatusGroup(_Read):
    name: str | None = None
    code: str
    active: bool | None = None
    ordering: int | None = None
    process: bool | None = None
    statuses: list[str] = Field(default_factory=list)


class Site(_Read):
    code: str
    name: str | None = None


class IntegrationModule(_Read):
    code: str
    integrationCode: str | None = None
    active: bool = False
    name: str | None = None
    integrations: PHPObject | None = None


class ModuleEditResult(_Read):
    info: PHPObject = Field(default_factory=dict)


class Credentials(_Read):
    # Always sent; an answer without it must not pass for a key that can reach nothing.
    credentials: list[str]
    scopes: list[str] = Field(default_factory=list)
    siteAccess: str | None = None
    sitesAvailable: list[str] = Field(default_factory=list)


# Envelopes of the answers whose payload sits under one key.


class UserResult(_Read):
    user: User


class CustomerResult(_Read):
    customer: Customer


class Created(_Read):
    id: int


class StatusGroupsResult(_Read):
    statusGroups: Annotated[dict[str, StatusGroup], _empty_list_as({})]


class SettingValue(_Read):
    value: str | None = None


class AccountSettings(_Read):
    timezone: SettingValue | None = None


class SettingsResult(_Read):
    settings: AccountSettings


class SitesResult(_Read):
    sites: Annotated[dict[str, Site], _empty_list_as({})]


class IntegrationModuleResult(_Read):
    integrationModule: IntegrationModule
