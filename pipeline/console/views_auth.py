"""Sign-in and sign-out."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict, deque

from aiohttp import web

from pipeline.console.app import CONSOLE, NEW_SESSION, render

__all__ = ["routes"]

log = logging.getLogger(__name__)
routes = web.RouteTableDef()
FAILURES_ALLOWED = 5
FAILURE_WINDOW = 300.0


def _next_path(raw: str | None) -> str:
    """Only a path on this console: never an absolute or protocol-relative URL."""
    if raw and raw.startswith("/") and not raw.startswith(("//", "/\\")):
        return raw
    return "/"


def _throttled(failures: defaultdict[str, deque[float]], name: str) -> bool:
    recent = failures[name]
    while recent and recent[0] < time.monotonic() - FAILURE_WINDOW:
        recent.popleft()
    return len(recent) >= FAILURES_ALLOWED


@routes.get("/login")
async def login_page(request: web.Request) -> web.Response:
    return render(request, "login.html", title="Sign in", error="",
                  next=_next_path(request.query.get("next")), name="")


@routes.post("/login")
async def login(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    form = await request.post()
    name = str(form.get("name", "")).strip()
    password = str(form.get("password", ""))
    target = _next_path(str(form.get("next", "")))
    if _throttled(console.failures, name):
        return render(request, "login.html", status=429, title="Sign in", name=name,
                      next=target, error="Too many failed attempts: wait a few minutes.")
    # argon2 takes a while on purpose: off the event loop.
    account = await asyncio.to_thread(console.accounts.authenticate, name, password)
    if account is None:
        console.failures[name].append(time.monotonic())
        log.warning("console sign-in refused for %r", name[:64])
        return render(request, "login.html", status=401, title="Sign in", name=name,
                      next=target, error="Wrong name or password.")
    console.failures.pop(name, None)
    log.info("console sign-in: %s (%s)", account.name, account.role)
    request[NEW_SESSION] = console.sessions.new(account.name)  # a new CSRF token too
    raise web.HTTPSeeOther(target)


@routes.post("/logout")
async def logout(request: web.Request) -> web.Response:
    request[NEW_SESSION] = request.app[CONSOLE].sessions.new(None)
    raise web.HTTPSeeOther("/login")
