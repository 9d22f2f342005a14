"""CRM managers (the roster) and the employee mapping that routes calls to them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from pipeline.crm import errors as e
from pipeline.crm.client import RetailCRMClient
from schemas.mapping import EmployeeMapping

__all__ = ["MAX_ROSTER_PAGES", "Manager", "Roster", "effective_mapping", "fetch_roster",
           "link_refusal"]

MAX_ROSTER_PAGES = 50  # 5,000 users or groups


class Manager(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: int
    name: str
    email: str | None = None
    status: str | None = None
    groups: list[str] = Field(default_factory=list)


class Roster(BaseModel):
    """The active users of the CRM's manager groups, as of `synced_at`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    manager_groups: list[str]
    managers: dict[int, Manager]
    synced_at: datetime


def _within_pages(pages: int, method: str) -> None:
    if pages > MAX_ROSTER_PAGES:
        raise e.CRMMalformedResponse(
            f"retailCRM {method}: the portal reports {pages} pages of 100; callsync reads at "
            f"most {MAX_ROSTER_PAGES}", method=method)


async def fetch_roster(client: RetailCRMClient, *, now: datetime) -> Roster:
    """Manager groups from user-groups, their active users from users, page by page; a portal
    that reports more than `MAX_ROSTER_PAGES` pages of either is refused before they are read
    (a sync, and a command that waits for it, would otherwise read for as long as it said)."""
    groups: list[str] = []
    page = 1
    while True:
        result = await client.user_groups(page=page, limit=100)
        _within_pages(result.pagination.totalPageCount, "/api/user-groups")
        groups += [g.code for g in result.groups if g.isManager]
        if page >= result.pagination.totalPageCount:
            break
        page += 1
    managers: dict[int, Manager] = {}
    page = 1
    while groups:
        users = await client.users(filter={"active": True, "groups": groups}, page=page,
                                   limit=100)
        _within_pages(users.pagination.totalPageCount, "/api/users")
        for user in users.users:
            if not user.active:
                continue
            codes = [g.code for g in user.groups if g.code]
            if not set(codes) & set(groups):
                continue
            managers[user.id] = Manager(
                id=user.id, name=" ".join(p for p in (user.firstName, user.lastName) if p),
                email=user.email, status=user.status, groups=codes)
        if page >= users.pagination.totalPageCount:
            break
        page += 1
    return Roster(manager_groups=groups, managers=managers, synced_at=now)


def link_refusal(roster: Roster, crm_user_id: int) -> str | None:
    """Why this user cannot be linked, or None: only active users of a manager group."""
    if crm_user_id not in roster.managers:
        return (f"CRM user {crm_user_id} is not an active user of a manager group "
                f"({', '.join(roster.manager_groups) or 'none found'})")
    return None


def effective_mapping(mapping: EmployeeMapping, roster: Roster | None
                      ) -> tuple[EmployeeMapping, dict[str, str]]:
    """The mapping the calls use: links to users who are no longer active managers drop out
    (their calls go to the senior manager). Returns it and {employee: why it fell back}."""
    if roster is None:
        return mapping, {}
    dropped = {emp: f"user {link.crm_user_id} is no longer an active manager"
               for emp, link in mapping.employees.items()
               if link.crm_user_id not in roster.managers}
    if not dropped and (mapping.senior_manager_id is None
                        or mapping.senior_manager_id in roster.managers):
        return mapping, {}
    kept = {emp: link for emp, link in mapping.employees.items() if emp not in dropped}
    senior = mapping.senior_manager_id if mapping.senior_manager_id in roster.managers else None
    return mapping.model_copy(update={"employees": kept, "senior_manager_id": senior}), dropped


def roster_summary(roster: Roster | None) -> dict[str, Any]:
    if roster is None:
        return {"synced_at": None, "managers": []}
    return {"synced_at": roster.synced_at.isoformat(), "groups": roster.manager_groups,
            "managers": [m.model_dump() for m in roster.managers.values()]}
