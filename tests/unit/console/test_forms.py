"""The settings, link and replay forms read into command fields, or refused with reasons."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest

from pipeline.console.forms import (
    FormError,
    SettingsForm,
    link_fields,
    replay_fields,
    settings_fields,
)

FORM = {"portal_url": "https://acme.retailcrm.ru", "admin_email": "a@acme.example.com",
        "site_code": "main", "api_key": " key-1 ", "timezone": "Europe/Kyiv",
        "module_code": "", "order_method": "", "popup_max_age_seconds": "60",
        "recording_wait_seconds": "0"}


def test_the_form_becomes_activate_fields_keeping_options_it_does_not_show() -> None:
    current = {"options": {"send_after_reactivation": True, "missed_call_task": True}}
    fields = settings_fields("acme", {**FORM, "lead_create_order": "on",
                                      "send_after_reactivation": "on"}, current)
    assert fields["api_key"] == "key-1" and fields["module_code"] == "ringostat"
    assert fields["send_after_reactivation"] is True
    options = fields["options"]
    assert options["lead"] == {"create_customer": False, "create_order": True,
                               "at_answer": False}
    assert options["missed_call_task"] is False, "an unchecked box is off"
    assert options["send_after_reactivation"] is True, "not on the form: kept"
    assert options["order_method"] == "phone"
    assert "senior_manager_id" not in fields


def test_a_first_time_set_up_names_its_senior_manager() -> None:
    assert settings_fields("acme", {**FORM, "senior_manager_id": "350"},
                           None)["senior_manager_id"] == 350
    with pytest.raises(FormError) as bad:
        settings_fields("acme", {**FORM, "senior_manager_id": "x"}, None)
    assert set(bad.value.errors) == {"senior_manager_id"}


def test_a_first_set_up_without_a_chosen_zone_leaves_it_to_the_account() -> None:
    assert SettingsForm.from_config(None).values["timezone"] == "", "the form's first choice"
    fields = settings_fields("acme", {**FORM, "timezone": ""}, None)
    assert "timezone" not in fields  # the worker asks the account (else Europe/Moscow)
    assert settings_fields("acme", FORM, None)["timezone"] == "Europe/Kyiv"
    current = {"timezone": "Asia/Almaty", "options": {}}
    assert SettingsForm.from_config(current).values["timezone"] == "Asia/Almaty"
    assert settings_fields("acme", FORM, current)["timezone"] == "Europe/Kyiv"


def test_every_problem_is_named_by_its_field() -> None:
    with pytest.raises(FormError) as bad:
        settings_fields("ac me", {**FORM, "portal_url": "http://acme.example.com",
                                  "api_key": "", "timezone": "Mars/Olympus",
                                  "recording_wait_seconds": "many"}, None)
    assert {"tenant_id", "portal_url", "api_key", "timezone",
            "recording_wait_seconds"} <= set(bad.value.errors)
    assert "https" in bad.value.errors["portal_url"]


def test_a_module_code_must_start_with_its_integration_code() -> None:
    with pytest.raises(FormError) as bad:
        settings_fields("acme", {**FORM, "module_code": "acme-phone"}, None)
    assert "must start with 'ringostat'" in bad.value.errors["module_code"]
    fields = settings_fields("acme", {**FORM, "module_code": "ringostat-acme"}, None)
    assert fields["module_code"] == "ringostat-acme"


def test_the_form_is_filled_from_a_config_but_never_with_a_key() -> None:
    form = SettingsForm.from_config({"portal_url": "https://a.retailcrm.ru/", "options": {
        "customer_utm_fields": {"source": "utm_src"}, "status_sync": True}})
    assert form.values["utm_customer_source"] == "utm_src"
    assert form.values["status_sync"] is True and "api_key" not in form.values


def test_links() -> None:
    link = link_fields({"employee_id": " emp-9 ", "extension": "109", "crm_user_id": "27"})
    assert (link.employee_id, link.extension, link.crm_user_id) == ("emp-9", "109", 27)
    assert link_fields({"employee_id": "e", "crm_user_id": "1"}).extension is None
    with pytest.raises(FormError) as bad:
        link_fields({"employee_id": "", "crm_user_id": "", "extension": "x" * 40})
    assert set(bad.value.errors) == {"employee_id", "crm_user_id", "extension"}


def test_a_replay_window_is_read_in_the_tenants_zone() -> None:
    window = replay_fields({"since": "2026-11-23T00:00", "until": "2026-11-25T15:30"},
                           ZoneInfo("Europe/Kyiv"))
    assert window == {"since": "2026-11-23T00:00:00+02:00",
                      "until": "2026-11-25T15:30:00+02:00"}
    with pytest.raises(FormError, match="start before"):
        replay_fields({"since": "2026-11-25T00:00", "until": "2026-11-24T00:00"},
                      ZoneInfo("UTC"))
    with pytest.raises(FormError):
        replay_fields({"since": "yesterday", "until": ""}, ZoneInfo("UTC"))


def test_own_numbers_are_a_line_each_and_refused_by_their_place() -> None:
    fields = settings_fields("acme", {**FORM, "own_numbers": "+380 44 333 44 00\r\n\r\n"
                                      "044 333 44 01, 380500000001"}, None)
    assert fields["options"]["own_numbers"] == {
        "numbers": ["+380 44 333 44 00", "044 333 44 01", "380500000001"],
        "employee_extensions": False}, "an unchecked box is off"
    with pytest.raises(FormError) as bad:
        settings_fields("acme", {**FORM, "own_numbers": "+380443334400\n101",
                                 "own_employee_extensions": "on"}, None)
    assert bad.value.errors["own_numbers"].startswith("number 2: ")
    form = SettingsForm.from_config({"options": {"own_numbers": {
        "numbers": ["+380443334400", "0443334401"], "employee_extensions": False}}})
    assert form.values["own_numbers"] == "+380443334400\n0443334401"
    assert form.values["own_employee_extensions"] is False
    assert SettingsForm.from_config(None).values["own_employee_extensions"] is True


def test_the_callback_loop_is_a_box_off_unless_checked() -> None:
    assert settings_fields("acme", FORM, None)["options"]["callback_loop"] is False
    on = settings_fields("acme", {**FORM, "callback_loop": "on"}, None)
    assert on["options"]["callback_loop"] is True
    assert SettingsForm.from_config(None).values["callback_loop"] is False
    form = SettingsForm.from_config({"options": {"callback_loop": True}})
    assert form.values["callback_loop"] is True


def test_the_lead_at_answer_is_a_box_off_unless_checked() -> None:
    assert settings_fields("acme", FORM, None)["options"]["lead"]["at_answer"] is False
    on = settings_fields("acme", {**FORM, "lead_at_answer": "on"}, None)
    assert on["options"]["lead"]["at_answer"] is True
    assert SettingsForm.from_config(None).values["lead_at_answer"] is False
    form = SettingsForm.from_config({"options": {"lead": {"at_answer": True}}})
    assert form.values["lead_at_answer"] is True


def test_self_diagnosis_is_a_box_off_unless_checked() -> None:
    assert settings_fields("acme", FORM, None)["options"]["self_diagnosis"] is False
    on = settings_fields("acme", {**FORM, "self_diagnosis": "on"}, None)
    assert on["options"]["self_diagnosis"] is True
    assert SettingsForm.from_config(None).values["self_diagnosis"] is False
    form = SettingsForm.from_config({"options": {"self_diagnosis": True}})
    assert form.values["self_diagnosis"] is True
