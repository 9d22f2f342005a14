"""The double's telephony methods: manager lookup, pop-up events, call history upload."""

from __future__ import annotations

from typing import Any

from pipeline.devtools.crmdouble.handlers import (
    MAX_UPLOAD,
    Call,
    Reply,
    check_datetime,
    entity,
    flag,
    invalid,
    ok,
)

__all__ = ["call_event", "calls_upload", "manager"]

CALL_RESULTS = ("answered", "busy", "failed", "no answer", "not allowed", "unknown")
HANGUP_STATUSES = ("answered", "no answered", "busy", "cancel", "failed")


async def manager(c: Call) -> tuple[int, dict[str, Any]]:
    phone = str(c.need("phone"))
    found = c.portal.customers_by_phone(phone)
    customer = found[0] if found else None
    payload: dict[str, Any] = {"links": {"newOrderLink": "/orders/add",
                                         "newCustomerLink": "/customers/add"}}
    if customer is not None:
        mgr = c.portal.users.get(customer.get("managerId") or 0)
        if mgr is not None and mgr["active"]:
            payload["manager"] = {k: mgr.get(k) for k in
                                  ("id", "firstName", "lastName", "email")} | {
                "code": next(iter(c.portal.extensions.get(mgr["id"], [])), None)}
        if flag(c.params.get("details"), "details"):
            payload["customer"] = customer
            payload["links"]["customerLink"] = f"/customers/{customer['id']}"
    return ok(**payload)


async def call_event(c: Call) -> tuple[int, dict[str, Any]]:
    if not c.portal.telephony_enabled():
        raise Reply(400, "Telephony not enabled")
    event = c.json_field("event")
    if not isinstance(event, dict):
        raise invalid(event="This value should be of type object.")
    errors: dict[str, str] = {}
    if not event.get("phone"):
        errors["phone"] = "This value should not be blank."
    if event.get("type") not in ("in", "out", "hangup"):
        errors["type"] = "The value you selected is not a valid choice."
    if event.get("hangupStatus") is not None and event["hangupStatus"] not in HANGUP_STATUSES:
        errors["hangupStatus"] = "The value you selected is not a valid choice."
    if not event.get("codes") and not event.get("userIds"):  # "codes and/or userIds"
        errors["codes"] = "Either codes or userIds should not be blank."
    if errors:
        raise entity(errors)
    codes = {code for codes in c.portal.extensions.values() for code in codes}
    not_codes = [code for code in event.get("codes") or [] if str(code) not in codes]
    not_users = [uid for uid in event.get("userIds") or [] if uid not in c.portal.users]
    c.portal.call_events.append(event)
    return ok(notExistCodes=not_codes, notExistUsers=not_users)


def _check_call(c: Call, index: int, call: Any) -> dict[str, str]:
    where = f"calls[{index}]"
    if not isinstance(call, dict):
        return {where: "This value should be of type object."}
    errors: dict[str, str] = {}
    if call.get("type") not in ("in", "out"):
        errors[f"{where}.type"] = "The value you selected is not a valid choice."
    if not call.get("phone"):
        errors[f"{where}.phone"] = "This value should not be blank."
    if call.get("result") not in CALL_RESULTS:
        errors[f"{where}.result"] = "The value you selected is not a valid choice."
    try:
        check_datetime(call.get("date"), "%Y-%m-%d %H:%M:%S", f"{where}.date")
    except Reply as reply:
        errors.update(reply.body["errors"])
    if call.get("userId") is not None and call["userId"] not in c.portal.users:
        errors[f"{where}.userId"] = f"User with id {call['userId']} does not exist."
    for name in ("duration", "durationWaiting"):
        if call.get(name) is not None and (not isinstance(call[name], int) or call[name] < 0):
            errors[f"{where}.{name}"] = "This value should be a non-negative integer."
    return errors


async def calls_upload(c: Call) -> tuple[int, dict[str, Any]]:
    if not c.portal.telephony_enabled():
        raise Reply(400, "Telephony not enabled or not supports calls upload")
    calls = c.json_field("calls")
    if not isinstance(calls, list):
        raise invalid(calls="This value should be of type array.")
    if len(calls) > MAX_UPLOAD:
        raise invalid(calls=f"This collection should contain {MAX_UPLOAD} elements or less.")
    errors: dict[str, str] = {}
    for index, call in enumerate(calls):
        errors.update(_check_call(c, index, call))
    if errors:
        raise entity(errors)
    duplicates: list[str] = []
    processed = 0
    for call in calls:
        external_id = call.get("externalId")
        if external_id and external_id in c.portal.calls:
            duplicates.append(external_id)
            continue
        key = external_id or f"_anon-{c.portal.next_id()}"
        c.portal.calls[key] = dict(call)
        processed += 1
    return ok(processedCallsCount=processed, duplicateCalls=duplicates)
