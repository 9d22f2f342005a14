"""The double's customers, orders, tasks, references and integration modules."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pipeline.devtools.crmdouble.handlers import (
    MAX_UPLOAD,
    Call,
    Reply,
    as_list,
    check_datetime,
    entity,
    invalid,
    ok,
    user_of,
)

__all__ = [
    "customer_create", "customer_edit", "customer_get", "customers", "customers_upload",
    "module_edit", "module_get", "order_create", "orders", "orders_upload", "settings", "sites",
    "status_groups", "task_create", "task_edit", "tasks",
]

MSG_CODE_PREFIX = "Code prefix must match integrationCode"


def _object(c: Call, name: str) -> dict[str, Any]:
    value = c.json_field(name)
    if not isinstance(value, dict):
        raise invalid(**{name: "This value should be of type object."})
    return value


def _customer_ref(c: Call, ref: Any, field: str) -> dict[str, Any]:
    if not isinstance(ref, Mapping):
        raise entity({field: "This value should be of type object."})
    if ref.get("id") is not None:
        found = c.portal.customers.get(int(ref["id"]))
    elif ref.get("externalId"):
        found = c.portal.customer_by_external_id(str(ref["externalId"]))
    else:
        found = None
    if found is None:
        raise entity({field: "Customer not found."})
    return found


def _find_customer(c: Call) -> dict[str, Any]:
    ident = c.path_args["externalId"]
    by = c.params.get("by", "externalId")
    if by not in ("externalId", "id"):
        raise invalid(by="The value you selected is not a valid choice.")
    found = (c.portal.customers.get(int(ident)) if ident.isdigit() else None) if by == "id" \
        else c.portal.customer_by_external_id(ident)
    if found is None:
        raise Reply(404, "Not found")
    return found


async def customers(c: Call) -> tuple[int, dict[str, Any]]:
    f = c.filter("ids", "externalIds", "managers", "name", "email", "sites")
    found = list(c.portal.customers.values())
    if ids := as_list(f.get("ids")):
        found = [x for x in found if str(x["id"]) in ids]
    if email := f.get("email"):
        found = [x for x in found if x.get("email") == email]
    if sites := as_list(f.get("sites")):
        found = [x for x in found if x.get("site") in sites]
    if ext := as_list(f.get("externalIds")):
        found = [x for x in found if x.get("externalId") in ext]
    if managers := as_list(f.get("managers")):
        found = [x for x in found if str(x.get("managerId")) in managers]
    if name := str(f.get("name") or "").strip():
        digits = "".join(ch for ch in name if ch.isdigit())
        found = [x for x in found
                 if name.lower() in f"{x.get('firstName', '')} {x.get('lastName', '')}".lower()
                 or (digits and any(digits in "".join(ch for ch in p["number"] if ch.isdigit())
                                    for p in x.get("phones", [])))]
    return c.page(found, "customers")


async def customer_get(c: Call) -> tuple[int, dict[str, Any]]:
    if c.params.get("by", "externalId") != "id":
        c.site()  # an external id is a shop's own
    return ok(customer=_find_customer(c))


def _check_customer(c: Call, data: Mapping[str, Any]) -> None:
    if data.get("managerId") is not None:
        user_of(c, data["managerId"], "managerId")
    phones = data.get("phones", [])
    if not isinstance(phones, list) or not all(isinstance(p, Mapping) and p.get("number")
                                               for p in phones):
        raise entity({"phones": "Each phone needs a number."})


def _make_customer(c: Call, data: dict[str, Any]) -> int:
    site = c.site(data)
    _check_customer(c, data)
    if data.get("externalId") and c.portal.customer_by_external_id(data["externalId"]):
        raise entity({"externalId": f"Customer with externalId={data['externalId']} already "
                                    "exists."})
    new_id = c.portal.next_id()
    c.portal.customers[new_id] = {**data, "id": new_id, "site": site,
                                  "createdAt": c.portal.now()}
    return new_id


async def customer_create(c: Call) -> tuple[int, dict[str, Any]]:
    return 201, {"success": True, "id": _make_customer(c, _object(c, "customer"))}


def _upload(c: Call, field: str, kind: str,
            make: Callable[[Call, dict[str, Any]], int]) -> tuple[int, dict[str, Any]]:
    """customers/upload, orders/upload: each item made on its own; those that cannot be are
    listed as failed with their errors, and then the answer is 460 (the others are made)."""
    items = c.json_field(field)
    if not isinstance(items, list):
        raise invalid(**{field: "This value should be of type array."})
    if not items or len(items) > MAX_UPLOAD:
        raise invalid(**{field: f"This collection should contain 1 element or more and "
                                f"{MAX_UPLOAD} elements or less."})
    uploaded: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    errors: list[str] = []
    for item in items:
        if not isinstance(item, dict):
            raise invalid(**{field: "Each element should be of type object."})
        try:
            uploaded.append({"id": make(c, item), "externalId": item.get("externalId")})
        except Reply as refused:
            failed.append({"externalId": item.get("externalId")})
            found = refused.body.get("errors") or {}
            errors += [str(v) for v in (found.values() if isinstance(found, dict) else found)] \
                or [refused.body["errorMsg"]]
    name = kind.capitalize() + "s"
    body: dict[str, Any] = {f"uploaded{name}": uploaded}
    if not failed:
        return 200, {"success": True, **body}
    return 460, {"success": False, "errorMsg": f"{name} are loaded with errors",
                 "errors": errors, **body, f"failed{name}": failed}


async def customers_upload(c: Call) -> tuple[int, dict[str, Any]]:
    return _upload(c, "customers", "customer", _make_customer)


async def customer_edit(c: Call) -> tuple[int, dict[str, Any]]:
    found = _find_customer(c)
    data = _object(c, "customer")
    _check_customer(c, data)
    custom = {**(found.get("customFields") or {}), **(data.get("customFields") or {})}
    found.update({k: v for k, v in data.items() if k not in ("id", "customFields")})
    if custom:
        found["customFields"] = custom
    return ok(id=found["id"])


async def orders(c: Call) -> tuple[int, dict[str, Any]]:
    f = c.filter("ids", "externalIds", "customerId", "customerExternalId", "managers", "sites")
    found = list(c.portal.orders.values())
    if managers := as_list(f.get("managers")):
        found = [x for x in found if str(x.get("managerId")) in managers]
    if sites := as_list(f.get("sites")):
        found = [x for x in found if x.get("site") in sites]
    if ids := as_list(f.get("ids")):
        found = [x for x in found if str(x["id"]) in ids]
    if ext := as_list(f.get("externalIds")):
        found = [x for x in found if x.get("externalId") in ext]
    if customer_id := f.get("customerId"):
        found = [x for x in found if str(x["customer"].get("id")) == str(customer_id)]
    if customer_ext := f.get("customerExternalId"):
        found = [x for x in found if x["customer"].get("externalId") == customer_ext]
    return c.page(found, "orders")


async def order_create(c: Call) -> tuple[int, dict[str, Any]]:
    order = _make_order(c, _object(c, "order"))
    return 201, {"success": True, "id": order["id"], "order": order}


async def orders_upload(c: Call) -> tuple[int, dict[str, Any]]:
    return _upload(c, "orders", "order", lambda call, data: int(_make_order(call, data)["id"]))


def _make_order(c: Call, data: dict[str, Any]) -> dict[str, Any]:
    site = c.site(data)
    errors: dict[str, str] = {}
    if data.get("externalId") and c.portal.order_by_external_id(data["externalId"]):
        errors["externalId"] = f"Order with externalId={data['externalId']} already exists."
    if data.get("orderMethod") and data["orderMethod"] not in c.portal.order_methods:
        errors["orderMethod"] = f"OrderMethod with code \"{data['orderMethod']}\" does not exist."
    if errors:
        raise entity(errors, "Order is not loaded")
    if data.get("managerId") is not None:
        user_of(c, data["managerId"], "managerId")
    customer = _customer_ref(c, data["customer"], "customer") if data.get("customer") else None
    new_id = c.portal.next_id()
    order = {**data, "id": new_id, "number": f"{new_id}A", "site": site,
             "status": data.get("status", "new"), "createdAt": c.portal.now(),
             "customer": {"id": customer["id"], "externalId": customer.get("externalId")}
             if customer else {}}
    c.portal.orders[new_id] = order
    return order


async def tasks(c: Call) -> tuple[int, dict[str, Any]]:
    f = c.filter("performers", "text", "ids", "status")
    found = list(c.portal.tasks.values())
    if status := f.get("status"):
        if status not in ("completed", "performing"):
            raise invalid(**{"filter[status]": "The value you selected is not a valid choice."})
        found = [x for x in found if bool(x.get("complete")) == (status == "completed")]
    if performers := as_list(f.get("performers")):
        found = [x for x in found if str(x["performerId"]) in performers]
    if text := f.get("text"):
        found = [x for x in found if str(text).lower() in x["text"].lower()]
    if ids := as_list(f.get("ids")):
        found = [x for x in found if str(x["id"]) in ids]
    return c.page(found, "tasks")


async def task_create(c: Call) -> tuple[int, dict[str, Any]]:
    data = _object(c, "task")
    if data.get("performerId") in (None, ""):
        raise entity({"performerId": "This value should not be blank."}, "Task is not loaded")
    if not data.get("text"):
        raise entity({"text": "This value should not be blank."}, "Task is not loaded")
    user_of(c, data["performerId"], "performerId")
    if data.get("datetime") is not None:
        check_datetime(data["datetime"], "%Y-%m-%d %H:%M", "datetime")
    customer = _customer_ref(c, data["customer"], "customer") if data.get("customer") else None
    new_id = c.portal.next_id()
    c.portal.tasks[new_id] = {
        **data, "id": new_id, "createdAt": c.portal.now(), "complete": False,
        "performer": data["performerId"], "performerType": "user",
        "customer": {"id": customer["id"]} if customer else None}
    return 201, {"success": True, "id": new_id}


async def task_edit(c: Call) -> tuple[int, dict[str, Any]]:
    """retailcrm-api.md names the method only (§2.5); the rest is assumed from API v5: a `task`
    form field with what changes, `complete` a bool, 404 `Not found` (§1.4) for no such task,
    `{success, id}` as the customers' edit answers."""
    ident = c.path_args["id"]
    found = c.portal.tasks.get(int(ident)) if ident.isdigit() else None
    if found is None:
        raise Reply(404, "Not found")
    data = _object(c, "task")
    errors: dict[str, str] = {}
    if "complete" in data and not isinstance(data["complete"], bool):
        errors["complete"] = "This value should be of type bool."
    if "text" in data and not data["text"]:
        errors["text"] = "This value should not be blank."
    if "performerId" in data and data["performerId"] in (None, ""):
        errors["performerId"] = "This value should not be blank."
    if errors:
        raise entity(errors, "Task is not loaded")
    if data.get("performerId") is not None:
        user_of(c, data["performerId"], "performerId")
    if data.get("datetime") is not None:
        check_datetime(data["datetime"], "%Y-%m-%d %H:%M", "datetime")
    customer = _customer_ref(c, data["customer"], "customer") if data.get("customer") else None
    found.update({k: v for k, v in data.items() if k not in ("id", "customer")})
    if customer is not None:
        found["customer"] = {"id": customer["id"]}
    if "performerId" in data:
        found["performer"] = data["performerId"]
    c.portal.task_edits.append({"id": found["id"], **data})
    if data.get("complete") is True:
        found.setdefault("completedAt", c.portal.now())
    elif data.get("complete") is False:
        found.pop("completedAt", None)
    return ok(id=found["id"])


async def status_groups(c: Call) -> tuple[int, dict[str, Any]]:
    return ok(statusGroups=c.portal.status_groups)


async def sites(c: Call) -> tuple[int, dict[str, Any]]:
    """Keyed by code, like every reference; PHP's json_encode sends none as []."""
    found = {code: {"name": name, "code": code} for code, name in c.portal.sites.items()}
    return ok(sites=found or [])


async def settings(c: Call) -> tuple[int, dict[str, Any]]:
    """The account's system settings, as retailCRM names them (`value`, `updated_at`)."""
    return ok(settings={
        "default_currency": {"value": "RUB", "updated_at": "2024-01-01 00:00:00"},
        "system_language": {"value": "RU", "updated_at": "2024-01-01 00:00:00"},
        "timezone": {"value": c.portal.timezone, "updated_at": "2024-01-01 00:00:00"}})


async def module_get(c: Call) -> tuple[int, dict[str, Any]]:
    found = c.portal.modules.get(c.path_args["code"])
    if found is None:
        raise Reply(404, "Not found")
    return ok(integrationModule=found)


async def module_edit(c: Call) -> tuple[int, dict[str, Any]]:
    code = c.path_args["code"]
    data = _object(c, "integrationModule")
    errors: dict[str, str] = {}
    if data.get("code") not in (None, code):
        errors["code"] = "The code must match the code in the URL."
    if not data.get("integrationCode"):
        errors["integrationCode"] = "This value should not be blank."
    elif not code.startswith(str(data["integrationCode"])):
        errors.setdefault("code", MSG_CODE_PREFIX)
    if not isinstance(data.get("active", False), bool):
        errors["active"] = "This value should be of type bool."
    telephony = (data.get("integrations") or {}).get("telephony") or {}
    codes = telephony.get("additionalCodes") or []
    if not all(isinstance(x, Mapping) and isinstance(x.get("userId"), int) for x in codes):
        errors["integrations.telephony.additionalCodes"] = "userId must be an integer."
    if errors:
        raise entity(errors)
    missing_users = [x["userId"] for x in codes if x["userId"] not in c.portal.users]
    missing_sites = [x.get("siteCode") for x in telephony.get("externalPhones") or []
                     if x.get("siteCode") not in c.portal.sites]
    existing = c.portal.modules.get(code, {})
    c.portal.modules[code] = {**existing, **data, "code": code}
    if "additionalCodes" in telephony:  # the CRM routes pop-ups by these extensions
        c.portal.extensions = {}
        for x in codes:
            c.portal.extensions.setdefault(x["userId"], []).append(str(x["code"]))
    info: dict[str, Any] = {}
    if missing_users:
        info["notExistUsersIds"] = missing_users
    if missing_sites:
        info["notExistSiteCodes"] = missing_sites
    return ok(info=info or [])  # nothing to report: PHP's json_encode writes [], not {}
