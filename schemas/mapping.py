"""Which CRM user handles a telephony employee's calls, and who gets what nobody else does."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["EmployeeLink", "EmployeeMapping", "Link", "Routes", "Routing"]


class EmployeeLink(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    crm_user_id: int = Field(ge=1, description="retailCRM user id (an active manager)")
    extension: str | None = Field(default=None, max_length=32,
                                  description="The employee's extension, sent as `code`")


class EmployeeMapping(BaseModel):
    """One tenant's employee -> CRM manager links; keyed by tenant on the mappings topic."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tenant_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:\-]+$")
    employees: dict[str, EmployeeLink] = Field(default_factory=dict,
                                               description="employee id -> CRM user")
    senior_manager_id: int | None = Field(
        default=None, ge=1, description="Fallback for unmapped employees and missed calls")

    def crm_user_for(self, employee_id: str | None) -> int | None:
        link = self.employees.get(employee_id) if employee_id else None
        return link.crm_user_id if link else None

    def routing(self) -> Routing:
        # Extensions repeat across tenants (101, 102, …): one string each.
        return Routing({employee: Link(link.crm_user_id, sys.intern(link.extension)
                                       if link.extension else None)
                        for employee, link in self.employees.items()}, self.senior_manager_id)


class Link(NamedTuple):
    crm_user_id: int
    extension: str | None


@dataclass(frozen=True, slots=True, eq=False)
class Routing:
    """A mapping as the calls use it, kept for every tenant with calls: a tuple a link where
    the model has a model (50 links: about 10 KB instead of 28)."""

    employees: Mapping[str, Link]
    senior_manager_id: int | None

    def crm_user_for(self, employee_id: str | None) -> int | None:
        link = self.employees.get(employee_id) if employee_id else None
        return link.crm_user_id if link else None


# What planning reads a mapping through: the model, or the view of it.
Routes = EmployeeMapping | Routing
