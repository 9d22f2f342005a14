"""What every double method shares (call context, early replies, paging); the users methods."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pipeline.devtools.crmdouble.state import ApiKey, Portal

__all__ = ["Call", "Handler", "Reply", "Route", "entity", "invalid", "ok"]

USER_STATUSES = ("free", "busy", "dinner", "break")
PAGE_LIMITS = ("20", "50", "100")  # the contract's; 250 is unconfirmed: "do not use"
MAX_UPLOAD = 50


class Reply(Exception):
    def __init__(self, status: int, error_msg: str, errors: Any = None) -> None:
        super().__init__(error_msg)
        self.status = status
        self.body: dict[str, Any] = {"success": False, "errorMsg": error_msg}
        if errors:
            self.body["errors"] = errors


def invalid(**errors: str) -> Reply:
    return Reply(400, "Errors in the input parameters", errors)


def entity(errors: Mapping[str, str], msg: str = "Errors in the entity format") -> Reply:
    return Reply(400, msg, dict(errors))


@dataclass
class Call:
    portal: Portal
    key: ApiKey
    params: Mapping[str, Any]
    path_args: Mapping[str, str]

    def need(self, name: str) -> Any:
        value = self.params.get(name)
        if value in (None, ""):
            raise Reply(400, f"Parameter '{name}' is missing")
        return value

    def json_field(self, name: str) -> Any:
        raw = self.need(name)
        try:
            return json.loads(raw)
        except (TypeError, ValueError):
            raise invalid(**{name: "This value is not valid JSON."}) from None

    def page(self, items: list[dict[str, Any]], key: str) -> tuple[int, dict[str, Any]]:
        limit = str(self.params.get("limit", "20"))
        if limit not in PAGE_LIMITS:
            raise invalid(limit=f"The value you selected is not a valid choice ({limit}).")
        page = str(self.params.get("page", "1"))
        if not page.isdigit() or int(page) < 1:
            raise invalid(page="This value should be greater than or equal to 1.")
        n, p = int(limit), int(page)
        total_pages = max(1, -(-len(items) // n))
        return 200, {"success": True, key: items[(p - 1) * n: p * n], "pagination": {
            "limit": n, "totalCount": len(items), "currentPage": p,
            "totalPageCount": total_pages}}

    def filter(self, *known: str) -> Mapping[str, Any]:
        """The `filter[...]` of a list, bracket-encoded; a filter this double does not apply is
        refused rather than ignored (answering every entity would pass a wrong one)."""
        value = self.params.get("filter")
        if value in (None, ""):
            return {}
        if not isinstance(value, Mapping):
            raise invalid(filter="This value should be of type array (filter[name]=value).")
        unknown = sorted(str(k) for k in value if k not in known)
        if unknown:
            raise invalid(**{f"filter[{k}]": "This field was not expected." for k in unknown})
        return value

    def site(self, payload: Mapping[str, Any] | None = None) -> str:
        """The shop asked for; a key that sees several must name it (retailCRM: "If a key can
        see several shops, some methods also need `site`")."""
        site = str(self.params.get("site") or (payload or {}).get("site") or "")
        if not site:
            if len(self.portal.sites) > 1:
                raise Reply(400, "Parameter 'site' is missing")
            return next(iter(self.portal.sites))
        if site not in self.portal.sites:
            raise entity({"site": f"Site with code \"{site}\" not found."})
        return site


Handler = Callable[[Call], Awaitable[tuple[int, dict[str, Any]]]]


@dataclass(frozen=True)
class Route:
    verb: str
    pattern: re.Pattern[str]
    method: str  # permission name, as /api/credentials lists it
    handler: Handler
    versioned: bool = True


def ok(**payload: Any) -> tuple[int, dict[str, Any]]:
    return 200, {"success": True, **payload}


def as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, Mapping):
        return [str(v) for v in value.values()]
    if isinstance(value, list):
        return [str(v) for v in value]
    return [str(value)]


def flag(value: Any, name: str) -> bool | None:
    """A boolean as retailCRM takes it, `1` or `0` (the PHP client's NumericBoolean)."""
    if value is None:
        return None
    if str(value) not in ("1", "0"):
        raise invalid(**{name: "This value should be 1 or 0."})
    return str(value) == "1"


def check_datetime(value: Any, fmt: str, field: str) -> None:
    try:
        datetime.strptime(str(value), fmt)
    except ValueError:
        raise entity({field: f"This value is not a valid datetime ({fmt})."}) from None


def user_of(c: Call, user_id: Any, field: str) -> dict[str, Any]:
    user = c.portal.users.get(int(user_id)) if str(user_id).isdigit() else None
    if user is None:
        raise entity({field: f"User with id {user_id} does not exist."})
    return user


# -- /api -------------------------------------------------------------------------------------

async def credentials(c: Call) -> tuple[int, dict[str, Any]]:
    return ok(credentials=sorted(c.key.methods), scopes=c.key.scopes(),
               siteAccess="access_full", sitesAvailable=list(c.portal.sites))


# -- users ------------------------------------------------------------------------------------

async def users(c: Call) -> tuple[int, dict[str, Any]]:
    f = c.filter("active", "isManager", "groups", "email", "status", "online")
    found = list(c.portal.users.values())
    if (online := flag(f.get("online"), "filter[online]")) is not None:
        found = [u for u in found if bool(u.get("online")) == online]
    if (active := flag(f.get("active"), "filter[active]")) is not None:
        found = [u for u in found if u["active"] == active]
    if (manager := flag(f.get("isManager"), "filter[isManager]")) is not None:
        found = [u for u in found if u.get("isManager", False) == manager]
    if groups := as_list(f.get("groups")):
        found = [u for u in found if {g["code"] for g in u["groups"]} & set(groups)]
    if email := f.get("email"):
        found = [u for u in found if u.get("email") == email]
    if status := f.get("status"):
        found = [u for u in found if u.get("online") and u.get("status") == status]
    return c.page(found, "users")


def _user(c: Call) -> dict[str, Any]:
    ident = c.path_args["id"]
    found = c.portal.users.get(int(ident)) if ident.isdigit() else None
    if found is None:
        raise Reply(404, "Not found")
    return found


async def user_get(c: Call) -> tuple[int, dict[str, Any]]:
    return ok(user=_user(c))


async def user_status(c: Call) -> tuple[int, dict[str, Any]]:
    found = _user(c)
    status = c.need("status")
    if status not in USER_STATUSES:
        raise invalid(status="The value you selected is not a valid choice.")
    c.portal.status_changes.append({"userId": found["id"], "from": found.get("status"),
                                    "to": status})
    found["status"] = status
    return ok()


async def user_groups(c: Call) -> tuple[int, dict[str, Any]]:
    return c.page(list(c.portal.groups.values()), "groups")
