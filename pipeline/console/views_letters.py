"""Dead letters and invalid records, replays with live progress, commands and the audit log."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from pipeline.console.app import CONSOLE, Console, bad_request, render
from pipeline.console.forms import FormError, replay_fields, window_inputs
from pipeline.console.overview import LetterKind
from pipeline.console.views_tenants import send_or_refuse, tenant_id_of, zone_of
from pipeline.operations.operator import FINAL
from schemas.control import CommandResult

__all__ = ["progress_of", "routes"]

routes = web.RouteTableDef()
PAGE = 200


def progress_of(result: CommandResult | None) -> dict[str, Any] | None:
    """Read, replayed, settled, remaining and the share done, from a replay's answer."""
    data = result.data if result is not None else {}
    if "scanned" not in data:
        return None
    total = data["scanned"] + data.get("remaining", 0)
    share = data["scanned"] / total if total else 1.0
    return {"scanned": data["scanned"], "submitted": data.get("submitted", 0),
            "settled": data.get("settled", 0), "remaining": data.get("remaining", 0),
            "percent": round(share * 100)}


def _kind(request: web.Request) -> LetterKind:
    return "invalid" if request.query.get("kind") == "invalid" else "dead"


def _letters(request: web.Request) -> dict[str, Any]:
    console = request.app[CONSOLE]
    tenant_id = tenant_id_of(request)
    kind = _kind(request)
    view = console.overview.tenant(tenant_id)
    settled_at = (view.state or {}).get("settled_at")
    return {"view": view, "kind": kind,
            "letters": console.overview.letters_of(kind, tenant_id)[:PAGE],
            "settled_at": datetime.fromisoformat(settled_at) if settled_at else None}


@routes.get("/tenants/{tenant}/letters")
async def letters(request: web.Request) -> web.Response:
    context = _letters(request)
    view = context["view"]
    since, until = window_inputs(datetime.now(UTC), zone_of(view))
    return render(request, "letters.html", title=f"{view.tenant_id}: {context['kind']} records",
                  since=since, until=until, zone=str(zone_of(view)), **context)


@routes.get("/tenants/{tenant}/letters/rows")
async def letter_rows(request: web.Request) -> web.Response:
    return render(request, "_letter_rows.html", **_letters(request))


@routes.get("/letters/unattributed")
async def unattributed(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    records = sorted(console.overview.letters_of("invalid", None)
                     + console.overview.letters_of("dead", None),
                     key=lambda r: r.at or datetime.min.replace(tzinfo=UTC), reverse=True)
    return render(request, "unattributed.html", title="Records without a tenant",
                  letters=records[:PAGE])


@routes.post("/tenants/{tenant}/replay")
async def replay(request: web.Request) -> web.Response:
    tenant_id = tenant_id_of(request)
    view = request.app[CONSOLE].overview.tenant(tenant_id)
    form = {k: str(v) for k, v in (await request.post()).items()}
    try:
        window = replay_fields(form, zone_of(view))
    except FormError as bad:
        raise bad_request(request, f"The replay was not sent: {bad}") from None
    sent = send_or_refuse(request, "replay", tenant_id, **window)
    raise web.HTTPSeeOther(f"/commands/{sent.command_id}")


def _command_context(console: Console, command_id: str) -> dict[str, Any]:
    answer = console.answer(command_id)
    answers = console.overview.results.get(command_id, [])
    entry = next((e for e in console.audit.entries(limit=2000)
                  if e.command_id == command_id), None)
    return {"command_id": command_id, "answer": answer, "answers": answers[-20:],
            "entry": entry, "progress": progress_of(answer),
            "final": answer is not None and answer.status in FINAL,
            "following": command_id in console.send().pending}


@routes.get("/commands/{command_id}")
async def command_page(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    command_id = request.match_info["command_id"]
    context = _command_context(console, command_id)
    if context["entry"] is None and context["answer"] is None:
        raise web.HTTPNotFound(text="no such command")
    return render(request, "command.html", title=f"Command {command_id}", **context)


@routes.get("/commands/{command_id}/answer")
async def command_answer(request: web.Request) -> web.Response:
    context = _command_context(request.app[CONSOLE], request.match_info["command_id"])
    return render(request, "_answer.html", **context)


@routes.get("/audit")
async def audit(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    reads = request.query.get("reads") == "1"
    tenant = request.query.get("tenant", "").strip()
    user = request.query.get("user", "").strip()
    entries = [e for e in console.audit.entries(limit=5000)
               if (reads or e.type not in ("status", "employees"))
               and (not tenant or e.tenant_id == tenant) and (not user or e.user == user)]
    return render(request, "audit.html", title="Audit", entries=entries[:500], reads=reads,
                  tenant=tenant, user=user)
