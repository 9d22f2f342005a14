"""The real client against the double over loopback HTTP: typed results and typed failures."""

from __future__ import annotations

import pytest

from pipeline.crm import errors as e
from pipeline.crm.client import RetailCRMClient
from pipeline.crm.methods import REQUIRED_METHODS
from pipeline.devtools.crmdouble.admin import KeySpec
from pipeline.devtools.crmdouble.server import CRMDouble
from pipeline.devtools.crmdouble.state import ApiKey, Portal
from schemas.crm import (
    CallEventPayload,
    CallResult,
    CallUpload,
    CustomerPayload,
    CustomerPhone,
    CustomerRef,
    OrderPayload,
    SourcePayload,
    TaskPayload,
)
from tests.integration.support import MODULE, client


async def test_a_call_flow_lands_in_the_crm(crm_double: CRMDouble, portal: Portal) -> None:
    async with client(crm_double) as crm:
        creds = await crm.credentials()
        assert set(REQUIRED_METHODS) <= set(creds.credentials)
        info = await crm.edit_integration_module(MODULE)
        assert info.info == {}
        assert (await crm.integration_module("ringostat-acme")).active

        lookup = await crm.telephony_manager("+380501112233")
        assert lookup.customer is None
        customer_id = await crm.create_customer(CustomerPayload(
            externalId="acme:+380501112233", phones=[CustomerPhone(number="+380501112233")],
            managerId=27, source=SourcePayload(source="google", medium="cpc")))
        lookup = await crm.telephony_manager("+380501112233")
        assert lookup.customer is not None and lookup.customer.id == customer_id
        assert lookup.manager is not None and lookup.manager.id == 27
        assert lookup.manager.code == "101"

        order = await crm.create_order(OrderPayload(
            externalId="acme:rs-1", orderMethod="phone", managerId=27,
            customer=CustomerRef(id=customer_id), source=SourcePayload(source="google")))
        assert order.order is not None and order.order.customer == {
            "id": customer_id, "externalId": "acme:+380501112233"}
        task_id = await crm.create_task(TaskPayload(
            text="Missed call", performerId=27, datetime="2026-11-25 10:05",
            customer=CustomerRef(id=customer_id), phone="+380501112233"))
        uploaded = await crm.upload_calls([CallUpload(
            externalId="rs-1", date="2026-11-25 10:03:00", type="in", phone="+380501112233",
            userId=27, result=CallResult.ANSWERED, duration=60, durationWaiting=5,
            recordUrl="https://rec.example/rs-1.mp3", source=SourcePayload(keyword="sofa"))])
        assert uploaded.processedCallsCount == 1
        again = await crm.upload_calls([CallUpload(
            externalId="rs-1", date="2026-11-25 10:03:00", type="in", phone="+380501112233",
            result=CallResult.ANSWERED, duration=60, durationWaiting=5)])
        assert again.duplicateCalls == ["rs-1"] and again.processedCallsCount == 0
        popup = await crm.call_event(CallEventPayload(phone="+380501112233", type="in",
                                                      codes=["101"]))
        assert popup.notExistCodes == []

        assert [o.externalId for o in (await crm.orders(
            filter={"externalIds": ["acme:rs-1"]})).orders] == ["acme:rs-1"]
        assert [t.id for t in (await crm.tasks(filter={"performers": [27]})).tasks] == [task_id]
        assert (await crm.customer("acme:+380501112233")).managerId == 27
        await crm.edit_customer("acme:+380501112233", CustomerPayload(managerId=28))
        assert (await crm.customer(str(customer_id), by="id")).managerId == 28
    assert portal.calls["rs-1"]["recordUrl"] == "https://rec.example/rs-1.mp3"
    assert portal.calls["rs-1"]["source"] == {"keyword": "sofa"}


async def test_a_task_an_earlier_try_made_is_found_whoever_it_was_given_to(
        crm_double: CRMDouble, portal: Portal) -> None:
    # The next owner of a partition may pick another performer than the one that made the task
    # (the customer's manager, known now from its lookup, or a changed mapping): the marker
    # alone names the call.
    made = TaskPayload(text="Missed call from +380501112233", performerId=27,
                       commentary="Call rs-9 at 10:05", datetime="2026-11-25 10:05")
    async with client(crm_double) as crm:
        task_id = await crm.create_task(made)
        again = made.model_copy(update={"performerId": 28})
        assert await crm.find_task(again, "Call rs-9 ") == task_id
        assert await crm.find_task(again, "Call rs-10 ") is None


async def test_users_groups_and_status(crm_double: CRMDouble, portal: Portal) -> None:
    async with client(crm_double) as crm:
        managers = await crm.users(filter={"active": True, "isManager": True})
        assert sorted(u.id for u in managers.users) == [27, 28]
        groups = await crm.user_groups()
        assert {g.code: g.isManager for g in groups.groups} == {"manager": True,
                                                                "director": False}
        await crm.set_user_status(27, "busy")
        assert (await crm.user(27)).status == "busy"
        assert "new" in await crm.status_groups()
        with pytest.raises(e.NotFound):
            await crm.user(999)


async def test_authorization_failures_are_typed(crm_double: CRMDouble, portal: Portal) -> None:
    portal.keys["narrow"] = ApiKey("narrow", {"/api/users"}, "narrow")
    async with client(crm_double, "narrow") as crm:
        with pytest.raises(e.AccessDenied) as denied:
            await crm.create_customer(CustomerPayload(externalId="x"))
        assert denied.value.method == "/api/customers/create"
    async with client(crm_double, "wrong") as crm:
        with pytest.raises(e.InvalidApiKey):
            await crm.users()
    async with client(crm_double, portal="ghost") as crm:
        with pytest.raises(e.AccountNotFound):
            await crm.users()
        with pytest.raises(e.AccountNotFound):
            await crm.create_task(TaskPayload(text="x", performerId=27))
    async with client(crm_double) as crm:
        with pytest.raises(e.TelephonyDisabled):
            await crm.call_event(CallEventPayload(phone="+380501112233", type="in"))
        with pytest.raises(e.ValidationFailed) as invalid:
            await crm.create_task(TaskPayload(text="x", performerId=999))
        assert "performerId" in invalid.value.errors


async def test_shops_and_the_module_code_prefix_through_the_client(crm_double: CRMDouble,
                                                                   portal: Portal) -> None:
    portal.keys["ref"] = ApiKey("ref", {"/api/reference/sites"}, "ref")
    async with client(crm_double, "ref") as crm:
        sites = await crm.sites()
    assert list(sites) == ["main"] and sites["main"].name == "Main shop"
    async with client(crm_double) as crm:
        with pytest.raises(e.ValidationFailed) as refused:
            await crm.edit_integration_module(MODULE.model_copy(update={"code": "acme"}))
        assert refused.value.errors == {"code": "Code prefix must match integrationCode"}
        assert (await crm.edit_integration_module(MODULE)).info == {}


async def test_rate_limit_server_errors_and_timeouts_are_retryable(
        crm_double: CRMDouble, portal: Portal) -> None:
    from pipeline.devtools.crmdouble.state import Fault

    crm_double.state.faults.append(Fault(portal="acme", status=503, remaining=1))
    crm_double.state.faults.append(Fault(portal="acme", status=502, remaining=1))
    crm_double.state.faults.append(Fault(portal="acme", latency=0.6, remaining=1))
    async with RetailCRMClient(base_url=crm_double.portal_url("acme"), api_key="acme-key",
                               timeout=0.2) as crm:
        for expected in (e.RateLimited, e.CRMServerError, e.CRMTransportError):
            with pytest.raises(expected) as caught:
                await crm.users()
            assert caught.value.retryable
        assert (await crm.users()).pagination.totalCount == 4


def test_key_spec_defaults_to_every_method() -> None:
    assert set(REQUIRED_METHODS) <= set(KeySpec(key="k").methods)
