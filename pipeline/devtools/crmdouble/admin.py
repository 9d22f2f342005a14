"""The double's admin surface (not part of retailCRM): seed portals, break keys, inject faults."""

from __future__ import annotations

import dataclasses
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipeline.devtools.crmdouble.state import ALL_METHODS, ApiKey, DoubleState, Fault, Portal

__all__ = ["GroupSpec", "KeySpec", "PortalSpec", "UserSpec", "admin_routes", "seed_portal"]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KeySpec(_Spec):
    key: str = Field(min_length=1)
    label: str | None = None
    methods: list[str] = Field(default_factory=lambda: list(ALL_METHODS))


class GroupSpec(_Spec):
    code: str
    name: str
    isManager: bool = False


class UserSpec(_Spec):
    id: int | None = None
    firstName: str
    lastName: str = ""
    email: str | None = None
    active: bool = True
    groups: list[str] = Field(default_factory=lambda: ["manager"])
    status: str = "free"
    online: bool = True
    isAdmin: bool = False


class PortalSpec(_Spec):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    timezone: str = "Europe/Moscow"
    sites: dict[str, str] = Field(default_factory=lambda: {"main": "Main shop"})
    keys: list[KeySpec] = Field(default_factory=list)
    groups: list[GroupSpec] = Field(
        default_factory=lambda: [GroupSpec(code="manager", name="Менеджеры", isManager=True),
                                 GroupSpec(code="director", name="Руководители")])
    users: list[UserSpec] = Field(default_factory=list)


class FaultSpec(_Spec):
    portal: str | None = None
    method: str | None = None
    status: int | None = None
    error_msg: str | None = None
    latency: float = 0.0
    disconnect: bool = False
    count: int | None = Field(default=None, ge=1)
    apply_first: bool = False
    malformed: bool = False
    huge_bytes: int = Field(default=0, ge=0)
    drip_seconds: float = Field(default=0.0, ge=0)


def _label(spec: KeySpec) -> str:
    return spec.label or f"{spec.key[:4]}…"


def add_user(portal: Portal, spec: UserSpec) -> dict[str, Any]:
    user_id = portal.reserve_id(spec.id) if spec.id else portal.next_id()
    groups = [portal.groups[c] for c in spec.groups if c in portal.groups]
    user = {**spec.model_dump(exclude={"groups"}), "id": user_id,
            "groups": [{"id": g["id"], "name": g["name"], "code": g["code"]} for g in groups],
            "isManager": any(g["isManager"] for g in groups), "createdAt": portal.now()}
    portal.users[user_id] = user
    return user


def seed_portal(state: DoubleState, spec: PortalSpec) -> Portal:
    portal = Portal(name=spec.name, timezone=spec.timezone, sites=dict(spec.sites))
    for g in spec.groups:
        portal.groups[g.code] = {**g.model_dump(), "id": portal.next_id()}
    for k in spec.keys:
        portal.keys[k.key] = ApiKey(key=k.key, methods=set(k.methods), label=_label(k))
    for u in spec.users:
        add_user(portal, u)
    state.portals[spec.name] = portal
    return portal


def admin_routes(state: DoubleState) -> list[web.AbstractRouteDef]:
    routes = web.RouteTableDef()

    def portal_of(request: web.Request) -> Portal:
        portal = state.portals.get(request.match_info["portal"])
        if portal is None:
            raise web.HTTPNotFound(text="no such portal")
        return portal

    async def body(request: web.Request, model: type[_Spec]) -> Any:
        try:
            return model.model_validate(await request.json())
        except (ValidationError, ValueError) as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None

    @routes.post("/_admin/portals")
    async def create_portal(request: web.Request) -> web.Response:
        portal = seed_portal(state, await body(request, PortalSpec))
        return web.json_response(portal.snapshot(), status=201)

    @routes.get("/_admin/portals/{portal}")
    async def read_portal(request: web.Request) -> web.Response:
        return web.json_response(portal_of(request).snapshot())

    @routes.post("/_admin/portals/{portal}/keys")
    async def add_key(request: web.Request) -> web.Response:
        spec: KeySpec = await body(request, KeySpec)
        portal_of(request).keys[spec.key] = ApiKey(spec.key, set(spec.methods), _label(spec))
        return web.json_response({"label": _label(spec)}, status=201)

    @routes.post("/_admin/portals/{portal}/keys/revoke")
    async def revoke_key(request: web.Request) -> web.Response:
        data = await request.json()
        key = portal_of(request).keys.get(str(data.get("key")))
        if key is None:
            raise web.HTTPNotFound(text="no such key")
        key.active = False
        return web.json_response({"label": key.label})

    @routes.post("/_admin/portals/{portal}/users")
    async def create_user(request: web.Request) -> web.Response:
        user = add_user(portal_of(request), await body(request, UserSpec))
        return web.json_response(user, status=201)

    @routes.patch("/_admin/portals/{portal}/users/{user_id}")
    async def change_user(request: web.Request) -> web.Response:
        portal = portal_of(request)
        user = portal.users.get(int(request.match_info["user_id"]))
        if user is None:
            raise web.HTTPNotFound(text="no such user")
        data = await request.json()
        if "groups" in data:
            groups = [portal.groups[c] for c in data.pop("groups") if c in portal.groups]
            user["groups"] = [{"id": g["id"], "name": g["name"], "code": g["code"]}
                              for g in groups]
            user["isManager"] = any(g["isManager"] for g in groups)
        user.update({k: v for k, v in data.items() if k in ("active", "status", "online")})
        return web.json_response(user)

    @routes.post("/_admin/faults")
    async def add_fault(request: web.Request) -> web.Response:
        spec: FaultSpec = await body(request, FaultSpec)
        state.faults.append(Fault(portal=spec.portal, method=spec.method, status=spec.status,
                                  error_msg=spec.error_msg, latency=spec.latency,
                                  disconnect=spec.disconnect, remaining=spec.count,
                                  apply_first=spec.apply_first, malformed=spec.malformed,
                                  huge_bytes=spec.huge_bytes, drip_seconds=spec.drip_seconds))
        return web.json_response({"faults": len(state.faults)}, status=201)

    @routes.get("/_admin/faults")
    async def list_faults(request: web.Request) -> web.Response:
        return web.json_response([dataclasses.asdict(f) for f in state.faults])

    @routes.delete("/_admin/faults")
    async def clear_faults(request: web.Request) -> web.Response:
        """All faults, or with ?portal=<name> only those aimed at that portal."""
        portal = request.query.get("portal")
        if portal is None:
            state.faults.clear()
        else:
            state.faults[:] = [f for f in state.faults if f.portal != portal]
        return web.json_response({"faults": len(state.faults)})

    @routes.get("/_admin/stats")
    async def stats(request: web.Request) -> web.Response:
        return web.json_response(state.stats())

    return list(routes)
