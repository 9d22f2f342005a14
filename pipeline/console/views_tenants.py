"""Tenants: the list with states and counts, one tenant's page, its settings (activation)."""

from __future__ import annotations

from collections import Counter
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aiohttp import web

from pipeline.console.app import CONSOLE, Console, account_of, forbidden, render
from pipeline.console.commands import Forbidden, Sent
from pipeline.console.forms import IDENT, UTM_TAGS, ZONES, FormError, SettingsForm, settings_fields
from pipeline.console.overview import TenantView
from pipeline.crm.methods import (
    BATCH_METHODS,
    CALLBACK_METHODS,
    REQUIRED_METHODS,
    TELEPHONY_UPLOAD_METHODS,
)
from pipeline.observability.logs import redactor
from pipeline.operations.operator import seal_api_key

__all__ = ["STATES", "fresh_status", "routes", "send_or_refuse", "tenant_id_of", "zone_of"]

routes = web.RouteTableDef()
STATES = ("active", "broken", "outage", "deactivated")
REACTIVATABLE = ("broken", "outage", "deactivated")
STATUS_WAIT = 8.0


def tenant_id_of(request: web.Request) -> str:
    tenant_id = request.match_info["tenant"]
    if not IDENT.match(tenant_id):
        raise web.HTTPNotFound(text="not a tenant id")
    return tenant_id


def zone_of(view: TenantView) -> ZoneInfo:
    try:
        return ZoneInfo(str((view.config or {}).get("timezone") or "UTC"))
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def send_or_refuse(request: web.Request, kind: str, tenant_id: str, **fields: Any) -> Sent:
    """Send through the dispatcher; a viewer's changing command ends in a 403 page."""
    try:
        return request.app[CONSOLE].send().send(account_of(request), kind, tenant_id, **fields)
    except Forbidden as refused:
        raise forbidden(request, str(refused)) from None


async def fresh_status(request: web.Request, tenant_id: str) -> dict[str, Any] | None:
    """A `status` answer's data, asked now (the worker's own view), or None without one."""
    result = await send_or_refuse(request, "status", tenant_id).answer(STATUS_WAIT)
    return result.data if result is not None and result.status == "done" else None


def _listing(console: Console, request: web.Request) -> dict[str, Any]:
    state = request.query.get("state", "")
    search = request.query.get("q", "").strip()
    everyone = console.overview.tenants()
    return {"tenants": console.overview.tenants(state=state if state in STATES else "",
                                                search=search),
            "state": state, "q": search, "states": STATES,
            "counts": Counter(v.shown for v in everyone), "total": len(everyone),
            "unattributed": console.overview.unattributed()}


@routes.get("/")
async def tenants(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    return render(request, "tenants.html", title="Tenants", **_listing(console, request))


@routes.get("/tenants/rows")
async def tenant_rows(request: web.Request) -> web.Response:
    return render(request, "_tenant_rows.html", **_listing(request.app[CONSOLE], request))


@routes.post("/tenants/refresh")
async def refresh(request: web.Request) -> web.Response:
    """Ask every tenant's worker for its status (fallbacks and backlog live only there)."""
    for tenant_id in request.app[CONSOLE].overview.tenant_ids():
        send_or_refuse(request, "status", tenant_id)
    raise web.HTTPSeeOther("/")


@routes.get("/tenants/new")
async def new_tenant(request: web.Request) -> web.Response:
    tenant_id = request.query.get("tenant", "").strip()
    error = ""
    if tenant_id:
        if IDENT.match(tenant_id):
            raise web.HTTPSeeOther(f"/tenants/{tenant_id}/settings")
        error = "A tenant id is 1-128 letters, digits or ._:- (the key of its call events)."
    return render(request, "new_tenant.html", title="Set up a tenant", tenant_id=tenant_id,
                  error=error)


@routes.get("/tenants/{tenant}")
async def tenant_page(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    tenant_id = tenant_id_of(request)
    view = console.overview.tenant(tenant_id)
    return render(request, "tenant.html", title=tenant_id, view=view,
                  reactivatable=view.shown in REACTIVATABLE)


@routes.get("/tenants/{tenant}/card")
async def tenant_card(request: web.Request) -> web.Response:
    view = request.app[CONSOLE].overview.tenant(tenant_id_of(request))
    return render(request, "_tenant_card.html", view=view)


@routes.get("/tenants/{tenant}/live")
async def tenant_live(request: web.Request) -> web.Response:
    tenant_id = tenant_id_of(request)
    return render(request, "_live.html", tenant_id=tenant_id,
                  live=await fresh_status(request, tenant_id))


@routes.post("/tenants/{tenant}/deactivate")
async def deactivate(request: web.Request) -> web.Response:
    form = await request.post()
    sent = send_or_refuse(request, "deactivate", tenant_id_of(request),
                          reason=str(form.get("reason", "")).strip()[:500])
    raise web.HTTPSeeOther(f"/commands/{sent.command_id}")


def _settings_page(request: web.Request, tenant_id: str, form: SettingsForm, *,
                   status: int = 200, new: bool = False) -> web.Response:
    view = request.app[CONSOLE].overview.tenant(tenant_id)
    return render(request, "settings.html", status=status, title=f"{tenant_id}: settings",
                  view=view, form=form, zones=ZONES, utm_tags=UTM_TAGS, new=new,
                  methods=(*REQUIRED_METHODS, *TELEPHONY_UPLOAD_METHODS),
                  callback_methods=CALLBACK_METHODS, batch_methods=BATCH_METHODS,
                  reactivatable=view.shown in REACTIVATABLE)


async def _current_config(request: web.Request, tenant_id: str) -> dict[str, Any] | None:
    """The worker's config (an activation from here is there before any topic has it), else
    the integrations topic's."""
    live = await fresh_status(request, tenant_id)
    if live is not None and live.get("config"):
        config: dict[str, Any] = live["config"]
        return config
    return request.app[CONSOLE].overview.configs.get(tenant_id)


@routes.get("/tenants/{tenant}/settings")
async def settings_page(request: web.Request) -> web.Response:
    tenant_id = tenant_id_of(request)
    config = await _current_config(request, tenant_id)
    return _settings_page(request, tenant_id, SettingsForm.from_config(config),
                          new=config is None)


@routes.post("/tenants/{tenant}/settings")
async def save_settings(request: web.Request) -> web.Response:
    tenant_id = tenant_id_of(request)
    if not account_of(request).can_change:
        raise forbidden(request, f"{account_of(request).name} has the read-only role: "
                        "activate is not allowed")
    form = {k: str(v) for k, v in (await request.post()).items() if k != "csrf_token"}
    current = await _current_config(request, tenant_id)
    try:
        fields = settings_fields(tenant_id, form, current)
    except FormError as bad:
        shown = SettingsForm(values={**SettingsForm.from_config(current).values,
                                     **{k: v for k, v in form.items() if k != "api_key"}},
                             errors=bad.errors)
        for box in ("lead_create_customer", "lead_create_order", "lead_at_answer",
                    "missed_call_task", "callback_loop", "self_diagnosis", "status_sync",
                    "own_employee_extensions", "send_after_reactivation"):
            shown.values[box] = box in form
        return _settings_page(request, tenant_id, shown, status=400, new=current is None)
    redactor.register(fields["api_key"])  # no log line of this process can show it
    # The key travels encrypted for this tenant, as the CLI sends it; the clear text is
    # dropped with this request.
    fields["api_key"] = seal_api_key(request.app[CONSOLE].settings, tenant_id,
                                     fields["api_key"])
    sent = send_or_refuse(request, "activate", tenant_id, **fields)
    raise web.HTTPSeeOther(f"/commands/{sent.command_id}")
