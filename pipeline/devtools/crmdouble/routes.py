"""Which path and verb reach which double method, and the permission each needs."""

from __future__ import annotations

import re

from pipeline.devtools.crmdouble import entities, handlers, telephony
from pipeline.devtools.crmdouble.handlers import Handler, Route

__all__ = ["ROUTES", "match"]


def _r(verb: str, path: str, method: str, handler: Handler, *, versioned: bool = True) -> Route:
    pattern = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", path) + "$")
    return Route(verb, pattern, method, handler, versioned)


ROUTES: tuple[Route, ...] = (
    _r("GET", "credentials", "/api/credentials", handlers.credentials, versioned=False),
    _r("GET", "users", "/api/users", handlers.users),
    _r("GET", "users/{id}", "/api/users/{id}", handlers.user_get),
    _r("POST", "users/{id}/status", "/api/users/{id}/status", handlers.user_status),
    _r("GET", "user-groups", "/api/user-groups", handlers.user_groups),
    _r("GET", "telephony/manager", "/api/telephony/manager", telephony.manager),
    _r("POST", "telephony/call/event", "/api/telephony/call/event", telephony.call_event),
    _r("POST", "telephony/calls/upload", "/api/telephony/calls/upload", telephony.calls_upload),
    _r("GET", "customers", "/api/customers", entities.customers),
    _r("POST", "customers/create", "/api/customers/create", entities.customer_create),
    _r("POST", "customers/upload", "/api/customers/upload", entities.customers_upload),
    _r("GET", "customers/{externalId}", "/api/customers/{externalId}", entities.customer_get),
    _r("POST", "customers/{externalId}/edit", "/api/customers/{externalId}/edit",
       entities.customer_edit),
    _r("GET", "orders", "/api/orders", entities.orders),
    _r("POST", "orders/create", "/api/orders/create", entities.order_create),
    _r("POST", "orders/upload", "/api/orders/upload", entities.orders_upload),
    _r("GET", "tasks", "/api/tasks", entities.tasks),
    _r("POST", "tasks/create", "/api/tasks/create", entities.task_create),
    _r("POST", "tasks/{id}/edit", "/api/tasks/{id}/edit", entities.task_edit),
    _r("GET", "reference/status-groups", "/api/reference/status-groups",
       entities.status_groups),
    _r("GET", "reference/sites", "/api/reference/sites", entities.sites),
    _r("GET", "settings", "/api/settings", entities.settings),
    _r("GET", "integration-modules/{code}", "/api/integration-modules/{code}",
       entities.module_get),
    _r("POST", "integration-modules/{code}/edit", "/api/integration-modules/{code}/edit",
       entities.module_edit),
)


def match(verb: str, path: str, *, versioned: bool) -> tuple[Route, dict[str, str]] | str:
    """The route and its path arguments, or the errorMsg for a path or verb that has none."""
    verbs_seen = False
    for route in ROUTES:
        if route.versioned != versioned:
            continue
        found = route.pattern.match(path)
        if found is None:
            continue
        if route.verb == verb:
            return route, found.groupdict()
        verbs_seen = True
    return "Method Not Allowed" if verbs_seen else "API method not found"
