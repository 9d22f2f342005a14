"""plan_call and its helpers: which CRM operations a call needs, decided without any I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pipeline.crm.models import Customer, ManagerLookup, TelephonyManager
from pipeline.delivery.planning import (
    CallPlan,
    customer_external_id,
    is_new_lead,
    order_external_id,
    order_for,
    plan_call,
    task_for,
    task_performer,
)
from schemas import CallEvent, EmployeeLink, EmployeeMapping, IntegrationConfig
from schemas.crm import CustomerRef

STARTED = datetime(2026, 3, 29, 0, 30, tzinfo=UTC)  # 02:30 Kyiv (EET), the night DST begins
MAPPING = EmployeeMapping(tenant_id="acme", senior_manager_id=50,
                          employees={"emp-1": EmployeeLink(crm_user_id=27, extension="101")})


def config(**options: Any) -> IntegrationConfig:
    return IntegrationConfig.model_validate({
        "tenant_id": "acme", "portal_url": "https://acme.retailcrm.ru",
        "admin_email": "admin@acme.example.com", "site_code": "main", "api_key": "k",
        "timezone": "Europe/Kyiv", "options": options})


def event(**changes: Any) -> CallEvent:
    base: dict[str, Any] = {
        "call_id": "rs-1", "tenant_id": "acme", "started_at": STARTED.isoformat(),
        "direction": "in", "client_phone": "+380501112233", "tracking_number": "+380443334400",
        "employee": {"id": "emp-1", "extension": "101"}, "status": "answered",
        "talk_seconds": 61, "wait_seconds": 9, "recording_url": "https://rec.example.com/1.mp3",
        "utm": {"source": "google", "medium": "cpc", "campaign": "brand", "term": "sofa"},
        "ga_client_id": "GA1.2.3.4"}
    return CallEvent.model_validate({**base, **changes})


def test_an_answered_call_is_uploaded_with_everything_retailcrm_takes() -> None:
    plan = plan_call(event(), config(), MAPPING)
    assert plan.upload is not None
    assert plan.upload.wire() == {
        "externalId": "rs-1", "date": "2026-03-29 02:30:00", "type": "in",
        "phone": "+380501112233", "userId": 27, "result": "answered", "duration": 61,
        "durationWaiting": 9, "recordUrl": "https://rec.example.com/1.mp3",
        "source": {"source": "google", "medium": "cpc", "campaign": "brand",
                   "keyword": "sofa"},
        "externalPhone": "+380443334400", "site": "main", "clientId": "GA1.2.3.4"}
    assert plan.task is None
    assert plan.lookup  # the CRM decides whether the caller is a new lead


def test_the_date_follows_the_tenants_zone_across_daylight_saving() -> None:
    summer = plan_call(event(started_at=(STARTED + timedelta(hours=1)).isoformat()),
                       config(), MAPPING)
    assert summer.upload is not None and summer.upload.date == "2026-03-29 04:30:00"


@pytest.mark.parametrize(("status", "result", "hangup"), [
    ("answered", "answered", "answered"),
    ("no_answer", "no answer", "no answered"),
    ("busy", "busy", "busy"),
    ("failed", "failed", "failed"),
    ("cancelled", "no answer", "cancel"),
])
def test_status_spellings_differ_between_upload_and_pop_up(status: str, result: str,
                                                          hangup: str) -> None:
    plan = plan_call(event(status=status, talk_seconds=0), config(), MAPPING)
    assert plan.upload is not None and plan.upload.result.value == result
    assert plan.popups[0].payload.hangupStatus is not None
    assert plan.popups[0].payload.hangupStatus.value == hangup


def test_an_unmapped_employee_is_sent_by_extension_and_pops_up_for_the_senior() -> None:
    plan = plan_call(event(employee={"id": "emp-9", "extension": "109"}), config(), MAPPING)
    assert plan.upload is not None
    assert plan.upload.userId is None and plan.upload.code == "109"
    assert plan.popups[0].payload.userIds == [50]
    assert plan.customer is not None and plan.customer.managerId == 50


def test_pop_ups_expire_a_configured_age_after_their_moment() -> None:
    started = plan_call(event(stage="started", status="in_progress"), config(), MAPPING)
    assert [p.payload.type for p in started.popups] == ["in"]
    assert started.popups[0].not_after == STARTED + timedelta(seconds=60)
    assert started.upload is None and not started.lookup
    ended = plan_call(event(), config(popup_max_age_seconds=5), MAPPING)
    assert ended.popups[0].payload.type == "hangup"
    assert ended.popups[0].not_after == STARTED + timedelta(seconds=9 + 61 + 5)


def test_a_missed_call_plans_a_task_with_the_crm_formats() -> None:
    plan = plan_call(event(status="no_answer", talk_seconds=0, wait_seconds=30,
                           recording_url=None), config(), MAPPING)
    assert plan.task is not None
    assert plan.task.datetime == "2026-03-29 02:30"  # ended 30 s later, same minute
    assert "rs-1" in plan.task.commentary and plan.task.phone == "+380501112233"
    assert plan.task.mapped_user_id == 27 and plan.task.senior_manager_id == 50


def test_outbound_calls_create_no_lead_and_no_task() -> None:
    plan = plan_call(event(direction="out", status="no_answer", talk_seconds=0), config(),
                     MAPPING)
    assert plan.upload is not None and plan.upload.type == "out"
    assert (plan.customer, plan.order, plan.task, plan.lookup) == (None, None, None, False)


@pytest.mark.parametrize(("customer", "order"), [(True, True), (True, False), (False, True),
                                                 (False, False)])
def test_lead_policy_per_tenant(customer: bool, order: bool) -> None:
    plan = plan_call(event(), config(lead={"create_customer": customer, "create_order": order}),
                     MAPPING)
    assert (plan.customer is not None, plan.order is not None) == (customer, order)
    assert plan.lookup == (customer or order)


def test_utm_tags_go_to_source_and_to_the_configured_custom_fields() -> None:
    plan = plan_call(event(), config(customer_utm_fields={"source": "rs_utm_source",
                                                          "term": "rs_utm_term"},
                                     order_utm_fields={"campaign": "rs_campaign"}), MAPPING)
    assert plan.customer is not None and plan.order is not None
    assert plan.customer.customFields == {"rs_utm_source": "google", "rs_utm_term": "sofa"}
    assert plan.order.customFields == {"rs_campaign": "brand"}
    assert plan.customer.source is not None and plan.customer.source.keyword == "sofa"
    assert plan.customer.externalId == customer_external_id("acme", "+380501112233")
    assert plan.order.externalId == order_external_id("acme", "rs-1")


def test_external_ids_are_stable_and_safe() -> None:
    assert customer_external_id("acme", "+380501112233") == "cs-acme-380501112233"
    assert order_external_id("acme", "a/b c") == "cs-acme-call-a-b-c"


def _plan_missed() -> CallPlan:
    return plan_call(event(status="busy", talk_seconds=0), config(), MAPPING)


def test_orders_only_for_new_leads() -> None:
    plan = _plan_missed()
    known = ManagerLookup(customer=Customer(id=5))
    assert not is_new_lead(known) and is_new_lead(ManagerLookup())
    assert order_for(plan, new_lead=False, customer=CustomerRef(id=5)) is None
    order = order_for(plan, new_lead=True, customer=CustomerRef(id=5))
    assert order is not None and order.customer == CustomerRef(id=5)


def test_task_performer_is_the_crms_then_the_employees_then_the_senior() -> None:
    plan = _plan_missed()
    assert task_performer(plan, ManagerLookup(manager=TelephonyManager(id=33))) == 33
    assert task_performer(plan, ManagerLookup()) == 27
    unmapped = plan_call(event(status="busy", talk_seconds=0, employee=None), config(), MAPPING)
    assert task_performer(unmapped, ManagerLookup()) == 50
    nobody = plan_call(event(status="busy", talk_seconds=0, employee=None), config(),
                       EmployeeMapping(tenant_id="acme"))
    assert task_performer(nobody, ManagerLookup()) is None
    task = task_for(plan, performer=33, customer=CustomerRef(id=5))
    assert task is not None and task.performerId == 33 and task.customer == CustomerRef(id=5)


def test_in_progress_and_answered_stages_only_pop_up() -> None:
    plan = plan_call(event(stage="answered", status="in_progress"), config(), MAPPING)
    assert plan.upload is None and plan.task is None and len(plan.popups) == 1
    assert plan.popups[0].payload.type == "in"
    assert plan.popups[0].not_after == STARTED + timedelta(seconds=9 + 60)


def test_status_sync_is_off_by_default_and_marks_busy_then_restores() -> None:
    assert plan_call(event(stage="answered", status="in_progress"), config(),
                     MAPPING).status_change is None
    on = config(status_sync=True)
    answered = plan_call(event(stage="answered", status="in_progress"), on, MAPPING)
    assert answered.status_change is not None
    assert (answered.status_change.user_id, answered.status_change.action) == (27, "busy")
    ended = plan_call(event(), on, MAPPING)
    assert ended.status_change is not None and ended.status_change.action == "restore"
    ringing = plan_call(event(stage="started", status="in_progress"), on, MAPPING)
    assert ringing.status_change is None  # nobody is on an inbound call that still rings
    unmapped = plan_call(event(stage="answered", status="in_progress", employee=None), on,
                         MAPPING)
    assert unmapped.status_change is None


def test_only_an_answered_call_without_a_recording_waits_for_one() -> None:
    waiting = config(recording_wait_seconds=120)
    bare = event(status="answered", recording_url=None, wait_seconds=5, talk_seconds=60)
    plan = plan_call(bare, waiting, MAPPING)
    assert plan.hold_upload_until == bare.started_at + timedelta(seconds=5 + 60 + 120)
    assert plan_call(bare, config(), MAPPING).hold_upload_until is None  # off by default
    recorded = event(status="answered", recording_url="https://records.example.com/1.mp3")
    assert plan_call(recorded, waiting, MAPPING).hold_upload_until is None
    missed = event(status="no_answer", recording_url=None, talk_seconds=0)
    assert plan_call(missed, waiting, MAPPING).hold_upload_until is None


OWN = "+380443334455"  # one of acme's own lines, not the tracking number of event()
MISSED = {"status": "no_answer", "talk_seconds": 0, "recording_url": None}


def _nothing_for_a_lead(plan: CallPlan) -> bool:
    return (plan.customer, plan.order, plan.task, plan.lookup) == (None, None, None, False)


@pytest.mark.parametrize("listed", ["+380443334455", "+380 44 333 44 55", "380443334455",
                                    "044 333 44 55", "(044) 333-44-55", "0443334455"])
def test_a_call_from_an_own_number_is_in_the_history_but_is_no_lead(listed: str) -> None:
    plan = plan_call(event(client_phone=OWN, **MISSED),
                     config(own_numbers={"numbers": [listed]}), MAPPING)
    assert _nothing_for_a_lead(plan)
    assert plan.upload is not None
    assert plan.upload.wire() == {  # the call itself, without a campaign's attribution
        "externalId": "rs-1", "date": "2026-03-29 02:30:00", "type": "in",
        "phone": OWN, "userId": 27, "result": "no answer", "duration": 0,
        "durationWaiting": 9, "externalPhone": "+380443334400", "site": "main"}


def test_another_number_is_still_a_lead_whatever_is_listed() -> None:
    options = {"own_numbers": {"numbers": ["+380 44 333 44 55", "044 333 44 56"]}}
    plan = plan_call(event(client_phone="+380443334457", **MISSED), config(**options), MAPPING)
    assert plan.customer is not None and plan.order is not None and plan.task is not None
    assert plan.lookup and plan.upload is not None and plan.upload.source is not None
    # a national form is read in the caller's own country: the same digits elsewhere differ
    poland = plan_call(event(client_phone="+48443334456", **MISSED), config(**options),
                       MAPPING)
    assert poland.task is not None and poland.order is not None


def test_a_call_from_its_own_tracking_number_is_no_lead() -> None:
    plan = plan_call(event(client_phone="+380443334400", **MISSED), config(), MAPPING)
    assert _nothing_for_a_lead(plan)


@pytest.mark.parametrize("extension", ["+380 67 123 45 67", "067 123 45 67", "380671234567"])
def test_an_employees_extension_that_is_a_phone_number_is_own(extension: str) -> None:
    mapping = MAPPING.model_copy(update={"employees": {
        **MAPPING.employees, "emp-2": EmployeeLink(crm_user_id=28, extension=extension)}})
    call = event(client_phone="+380671234567", **MISSED)
    assert _nothing_for_a_lead(plan_call(call, config(), mapping))
    off = plan_call(call, config(own_numbers={"employee_extensions": False}), mapping)
    assert off.task is not None and off.customer is not None and off.lookup


def test_short_or_unreadable_extensions_make_nothing_own() -> None:
    mapping = MAPPING.model_copy(update={"employees": {
        "emp-1": EmployeeLink(crm_user_id=27, extension="101"),
        "emp-2": EmployeeLink(crm_user_id=28, extension="sip:777-1234-5678"),
        "emp-3": EmployeeLink(crm_user_id=29, extension=None)}})
    plan = plan_call(event(**MISSED), config(), mapping)
    assert plan.task is not None and plan.order is not None


def test_an_own_number_still_pops_up_and_sets_the_status() -> None:
    options = {"own_numbers": {"numbers": [OWN]}, "status_sync": True}
    plan = plan_call(event(client_phone=OWN, stage="answered"), config(**options), MAPPING)
    assert [p.payload.phone for p in plan.popups] == [OWN]
    assert plan.status_change is not None and plan.status_change.action == "busy"


def test_an_outbound_call_to_an_own_number_carries_no_attribution() -> None:
    plan = plan_call(event(client_phone=OWN, direction="out"),
                     config(own_numbers={"numbers": [OWN]}), MAPPING)
    assert _nothing_for_a_lead(plan)
    assert plan.upload is not None and plan.upload.source is None
    assert plan.upload.clientId is None and plan.upload.recordUrl is not None



@pytest.mark.parametrize("changes", [
    {}, MISSED, {"employee": {"id": "emp-9", "extension": "109"}},
    {"client_phone": "+380671234567", **MISSED}, {"stage": "answered"},
    {"direction": "out"}])
def test_the_routing_kept_for_calls_plans_as_the_mapping_does(changes: dict[str, Any]) -> None:
    mapping = MAPPING.model_copy(update={"employees": {
        **MAPPING.employees, "emp-2": EmployeeLink(crm_user_id=28, extension="0671234567")}})
    tenant = config(status_sync=True)
    assert plan_call(event(**changes), tenant, mapping.routing()) == \
        plan_call(event(**changes), tenant, mapping)
