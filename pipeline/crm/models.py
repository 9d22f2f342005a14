"""Typed views of retailCRM v5 responses; unknown fields are kept, missing ones are None."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "CallEventResult",
    "CallsUploadResult",
    "Credentials",
    "Customer",
    "CustomersPage",
    "GroupRef",
    "GroupsPage",
    "IntegrationModule",
    "ManagerLookup",
    "ModuleEditResult",
    "Order",
    "OrderCreated",
    "OrdersPage",
    "Pagination",
    "StatusGroup",
    "Task",
    "TasksPage",
    "TelephonyManager",
    "User",
    "UserGroup",
    "UsersPage",
]


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
    source: dict[str, Any] | None = None
    customFields: dict[str, Any] | list[Any] | None = None


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
    customer: dict[str, Any] | None = None
    source: dict[str, Any] | None = None


class OrderCreated(_Read):
    id: int
    order: Order | None = None


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
    customer: dict[str, Any] | None = None


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
    manager: TelephonyManager | None = None
    customer: Customer | None = None
    links: dict[str, Any] = Field(default_factory=dict)


class CallsUploadResult(_Read):
    processedCallsCount: int = 0
    duplicateCalls: list[str] = Field(default_factory=list)


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


class IntegrationModule(_Read):
    code: str
    integrationCode: str | None = None
    active: bool = False
    name: str | None = None
    integrations: dict[str, Any] | None = None


class ModuleEditResult(_Read):
    info: dict[str, Any] = Field(default_factory=dict)


class Credentials(_Read):
    credentials: list[str] = Field(default_factory=list)
    scopes: list[str] = Field(default_factory=list)
    siteAccess: str | None = None
    sitesAvailable: list[str] = Field(default_factory=list)
