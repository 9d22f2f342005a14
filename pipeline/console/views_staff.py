"""Employees: the linking table (telephony employee → active CRM manager) and the senior."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from pipeline.console.app import CONSOLE, bad_request, render
from pipeline.console.forms import FormError, link_fields
from pipeline.console.views_tenants import send_or_refuse, tenant_id_of

__all__ = ["employee_rows", "routes"]

routes = web.RouteTableDef()
ROSTER_WAIT = 25.0  # the roster is synced from the CRM, page by page, at the tenant's pace
CHANGE_WAIT = 30.0


def employee_rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Linked employees, then the ones whose calls fell back to the senior manager (seen in
    calls but not linked), each with what the table shows."""
    mapping = data.get("mapping") or {}
    managers = {m["id"]: m for m in (data.get("roster") or {}).get("managers", [])}
    fallbacks: dict[str, str] = data.get("fallbacks") or {}
    rows = []
    for employee, link in sorted((mapping.get("employees") or {}).items()):
        user = link.get("crm_user_id")
        rows.append({"employee_id": employee, "extension": link.get("extension") or "",
                     "crm_user_id": user, "linked": True,
                     "problem": "" if user in managers else
                     f"user {user} is no longer an active manager: calls go to the senior",
                     "fallback": fallbacks.get(employee, "")})
    for employee, why in sorted(fallbacks.items()):
        if employee not in (mapping.get("employees") or {}):
            rows.append({"employee_id": employee, "extension": "", "crm_user_id": None,
                         "linked": False, "problem": why, "fallback": why})
    return rows


@routes.get("/tenants/{tenant}/employees")
async def employees_page(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    tenant_id = tenant_id_of(request)
    answer_id = request.query.get("answer", "")
    return render(request, "employees.html", title=f"{tenant_id}: employees",
                  view=console.overview.tenant(tenant_id),
                  answer=console.answer(answer_id) if answer_id else None)


@routes.get("/tenants/{tenant}/employees/table")
async def employees_table(request: web.Request) -> web.Response:
    """Asks the worker now: it syncs the CRM's managers and answers with the mapping."""
    tenant_id = tenant_id_of(request)
    sent = send_or_refuse(request, "employees", tenant_id)
    result = await sent.answer(ROSTER_WAIT)
    data = result.data if result is not None and result.status == "done" else None
    mapping = (data or {}).get("mapping") or {}
    roster = (data or {}).get("roster") or {}
    managers = sorted(roster.get("managers", []), key=lambda m: (m.get("name") or "", m["id"]))
    return render(request, "_employees_table.html", tenant_id=tenant_id, result=result,
                  command_id=sent.command_id, rows=employee_rows(data or {}),
                  managers=managers, roster=roster,
                  senior=mapping.get("senior_manager_id"), loaded=data is not None)


async def _change(request: web.Request, kind: str, **fields: Any) -> web.Response:
    tenant_id = tenant_id_of(request)
    sent = send_or_refuse(request, kind, tenant_id, **fields)
    await sent.answer(CHANGE_WAIT)  # so that the page after the redirect shows it
    raise web.HTTPSeeOther(f"/tenants/{tenant_id}/employees?answer={sent.command_id}")


@routes.post("/tenants/{tenant}/employees/link")
async def link(request: web.Request) -> web.Response:
    form = {k: str(v) for k, v in (await request.post()).items()}
    try:
        parsed = link_fields(form)
    except FormError as bad:
        raise bad_request(request, f"The link was not sent: {bad}") from None
    return await _change(request, "link", employee_id=parsed.employee_id,
                         extension=parsed.extension, crm_user_id=parsed.crm_user_id)


@routes.post("/tenants/{tenant}/employees/unlink")
async def unlink(request: web.Request) -> web.Response:
    form = await request.post()
    employee = str(form.get("employee_id", "")).strip()
    if not employee:
        raise bad_request(request, "Which employee? The form named none.")
    return await _change(request, "unlink", employee_id=employee)


@routes.post("/tenants/{tenant}/employees/senior")
async def senior(request: web.Request) -> web.Response:
    form = await request.post()
    try:
        user = int(str(form.get("crm_user_id", "")))
    except ValueError:
        raise bad_request(request, "Choose the senior manager among the CRM's managers.") from None
    return await _change(request, "senior", crm_user_id=user)
