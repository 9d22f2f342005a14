"""The console's aiohttp application: sessions, CSRF, sign-in required, pages rendered by Jinja2."""

from __future__ import annotations

import hmac
import logging
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
from aiohttp import web

from pipeline.config import Settings
from pipeline.console.accounts import Account, Accounts
from pipeline.console.audit import AuditLog
from pipeline.console.commands import Dispatcher
from pipeline.console.feed import Feed
from pipeline.console.overview import Overview
from pipeline.console.sessions import COOKIE, Session, SessionCodec
from pipeline.operations.operator import FINAL
from schemas.control import CommandResult

__all__ = ["ACCOUNT", "CONSOLE", "NEW_SESSION", "SESSION", "Console", "account_of",
           "bad_request", "forbidden", "make_app", "render"]

log = logging.getLogger(__name__)
HERE = Path(__file__).parent
PUBLIC = ("/login", "/static/", "/healthz")
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
HEADERS = {
    # Scripts and styles only from the console itself: no inline script can run.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                               "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Console:
    settings: Settings
    accounts: Accounts
    audit: AuditLog
    sessions: SessionCodec
    overview: Overview = field(default_factory=Overview)
    feed: Feed | None = None
    dispatcher: Dispatcher | None = None
    secure_cookies: bool = False
    # user name -> when sign-ins failed lately (views_auth throttles on it)
    failures: defaultdict[str, deque[float]] = field(default_factory=lambda: defaultdict(deque))
    templates: jinja2.Environment = field(default_factory=lambda: _environment())

    def send(self) -> Dispatcher:
        assert self.dispatcher is not None  # noqa: S101 - set on start-up
        return self.dispatcher

    def answer(self, command_id: str) -> CommandResult | None:
        """The newest answer known: final ones first, from the topic or from following it."""
        read = self.overview.answer(command_id)
        if read is not None and read.status in FINAL:
            return read
        followed = self.dispatcher.finished.get(command_id) if self.dispatcher else None
        return followed or read


CONSOLE = web.AppKey("console", Console)
SESSION = web.RequestKey("session", Session)
ACCOUNT = web.RequestKey("account", Account)  # absent: nobody is signed in
NEW_SESSION = web.RequestKey("new_session", Session)  # set by sign-in and sign-out


def _moment(value: datetime | str | None) -> datetime | None:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _ago(value: datetime | str | None) -> str:
    moment = _moment(value)
    if moment is None:
        return "—"
    seconds = int((datetime.now(UTC) - moment).total_seconds())
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if abs(seconds) >= size:
            return f"{seconds // size} {unit} ago"
    return f"{max(seconds, 0)} s ago"


def _when(value: datetime | str | None) -> str:
    moment = _moment(value)
    return "—" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"),
                             autoescape=True,
                             trim_blocks=True, lstrip_blocks=True)
    env.filters["ago"] = _ago
    env.filters["when"] = _when
    return env


def account_of(request: web.Request) -> Account:
    account: Account | None = request.get(ACCOUNT)
    if account is None:
        raise web.HTTPUnauthorized(text="sign in first")
    return account


def render(request: web.Request, template: str, *, status: int = 200,
           **context: Any) -> web.Response:
    console = request.app[CONSOLE]
    session = request[SESSION]
    feed = console.feed
    html = console.templates.get_template(template).render(
        account=request.get(ACCOUNT), csrf=session.csrf, path=request.path,
        caught_up=feed is None or feed.caught_up.is_set(), **context)
    return web.Response(text=html, content_type="text/html", status=status)


def _error_page(request: web.Request, title: str, message: str) -> str:
    console = request.app[CONSOLE]
    session = request[SESSION]
    return console.templates.get_template("error.html").render(
        account=request.get(ACCOUNT), csrf=session.csrf, path=request.path, caught_up=True,
        title=title, message=message)


def forbidden(request: web.Request, message: str) -> web.HTTPForbidden:
    """A 403 page to raise: what was refused and why."""
    return web.HTTPForbidden(text=_error_page(request, "Refused", message),
                             content_type="text/html")


def bad_request(request: web.Request, message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=_error_page(request, "Not sent", message),
                              content_type="text/html")


def _set_cookie(response: web.StreamResponse, console: Console, session: Session) -> None:
    response.set_cookie(COOKIE, console.sessions.dump(session), httponly=True,
                        samesite="Strict", secure=console.secure_cookies, path="/",
                        max_age=console.sessions.max_age)


@web.middleware
async def _sessions(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every visitor has a session (a signed cookie with a CSRF token); changing requests must
    bring the token; every page but sign-in needs an account that still exists."""
    console = request.app[CONSOLE]
    session = console.sessions.load(request.cookies.get(COOKIE))
    fresh = session is None
    if session is None:
        session = console.sessions.new(None)
    request[SESSION] = session
    account = console.accounts.get(session.user) if session.user else None
    if account is not None:
        request[ACCOUNT] = account
    public = request.path.startswith(PUBLIC)
    if request.method in UNSAFE:
        sent = request.headers.get("X-CSRF-Token") or str((await request.post()).get(
            "csrf_token", ""))
        if fresh or not sent or not hmac.compare_digest(sent, session.csrf):
            log.warning("refused a %s to %s without a valid CSRF token", request.method,
                        request.path)
            response: web.StreamResponse = render(
                request, "error.html", status=403, title="Refused",
                message="The form was refused: its CSRF token is missing or wrong. "
                        "Reload the page and try again.")
            _finish(response, console, session if fresh else None)
            return response
    if account is None and not public:
        if request.method in UNSAFE or request.headers.get("HX-Request"):
            # htmx takes the whole page to the sign-in when a session ended under a poll
            response = web.Response(status=401, text="sign in first",
                                    headers={"HX-Redirect": "/login"})
        else:
            response = web.Response(status=303, headers={
                "Location": f"/login?next={quote(request.path_qs)}"})
        _finish(response, console, session if fresh else None)
        return response
    try:
        response = await handler(request)
    except web.HTTPException as exc:  # redirects and errors raised by the views
        _finish(exc, console, request.get(NEW_SESSION) or (session if fresh else None),
                request.path)
        raise
    _finish(response, console, request.get(NEW_SESSION) or (session if fresh else None),
            request.path)
    return response


def _finish(response: web.StreamResponse, console: Console, session: Session | None,
            path: str = "") -> None:
    if path.startswith("/static/"):
        response.headers.setdefault("Cache-Control", "public, max-age=3600")
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    if session is not None:
        _set_cookie(response, console, session)


async def _healthz(request: web.Request) -> web.Response:
    feed = request.app[CONSOLE].feed
    return web.json_response({"status": "alive",
                              "caught_up": feed is None or feed.caught_up.is_set()})


def make_app(console: Console, *, start_feed: bool = True) -> web.Application:
    from pipeline.console import views_auth, views_letters, views_staff, views_tenants

    app = web.Application(middlewares=[_sessions], client_max_size=256 * 1024)
    app[CONSOLE] = console
    app.router.add_get("/healthz", _healthz)
    app.router.add_static("/static/", HERE / "static")
    for module in (views_auth, views_tenants, views_staff, views_letters):
        app.router.add_routes(module.routes)

    async def start(app: web.Application) -> None:
        if console.dispatcher is None:
            console.dispatcher = Dispatcher(console.settings, console.audit)
        if start_feed and console.feed is None:
            console.feed = Feed(console.settings, console.overview)
            await console.feed.start()

    async def stop(app: web.Application) -> None:
        if console.feed is not None:
            await console.feed.stop()
        if console.dispatcher is not None:
            await console.dispatcher.stop()

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    return app
