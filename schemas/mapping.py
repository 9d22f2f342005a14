"""Which CRM user handles a telephony employee's calls, and who gets what nobody else does."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["EmployeeLink", "EmployeeMapping"]


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
