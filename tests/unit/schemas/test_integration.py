"""Tenant integration config: validation and a key that never prints."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from schemas import IntegrationConfig
from schemas.control import ActivateCommand
from schemas.integration import IntegrationOptions, merge_patch
from tests.unit.trust import KEYRING

KEY = "A1b2C3d4E5f6G7h8"


def config(**changes: Any) -> IntegrationConfig:
    return IntegrationConfig.model_validate({
        "tenant_id": "acme", "portal_url": "https://acme.retailcrm.ru",
        "admin_email": "admin@acme.example.com", "site_code": "main", "api_key": KEY,
        "timezone": "Europe/Kyiv", **changes})


def test_the_key_never_prints() -> None:
    c = config()
    for text in (str(c), repr(c), c.model_dump_json(), str(c.model_dump())):
        assert KEY not in text
    assert c.api_key.get_secret_value() == KEY


@pytest.mark.parametrize(("field", "value"), [
    ("timezone", "Mars/Olympus"),
    ("admin_email", "not-an-email"),
    ("portal_url", "http://acme.retailcrm.ru"),
    ("portal_url", "ftp://acme"),
    ("api_key", ""),
    ("site_code", ""),
    ("module_code", "acme-phone"),
    ("module_code", "ring"),
])
def test_bad_values_are_refused_by_name(field: str, value: str) -> None:
    with pytest.raises(ValidationError) as caught:
        config(**{field: value})
    assert caught.value.errors()[0]["loc"][0] == field
    assert KEY not in str(caught.value)


def test_plain_http_is_allowed_only_on_loopback() -> None:
    assert config(portal_url="http://127.0.0.1:8080/acme").portal_url.host == "127.0.0.1"


@pytest.mark.parametrize("code", ["ringostat", "ringostat-acme", "ringostat_2"])
def test_a_module_code_starts_with_the_integration_code(code: str) -> None:
    assert config(module_code=code).module_code == code


def test_a_stored_config_from_before_the_prefix_rule_still_opens() -> None:
    stored = {**config().to_stored(KEYRING), "module_code": "rs"}
    assert IntegrationConfig.from_stored(stored, KEYRING).module_code == "rs"
    with pytest.raises(ValidationError, match="Code prefix must match integrationCode"):
        IntegrationConfig.model_validate({**stored, "api_key": KEY})


def test_an_activate_command_refuses_a_module_code_without_the_prefix() -> None:
    fields = {"command_id": "a-1", "tenant_id": "acme", "issued_at": "2026-01-01T00:00:00Z",
              "portal_url": "https://acme.retailcrm.ru", "admin_email": "a@acme.example.com",
              "site_code": "main", "api_key": KEYRING.encrypt(KEY, tenant_id="acme")}
    assert ActivateCommand.model_validate({**fields, "module_code": "ringostat-a"})
    with pytest.raises(ValidationError, match="must start with 'ringostat'"):
        ActivateCommand.model_validate({**fields, "module_code": "acme"})


@pytest.mark.parametrize(("target", "patch", "result"), [  # RFC 7386, appendix A
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
])
def test_merge_patch_follows_rfc_7386(target: Any, patch: Any, result: Any) -> None:
    assert merge_patch(target, patch) == result


def test_options_patched_change_only_what_the_patch_names() -> None:
    base = IntegrationOptions.model_validate({"status_sync": True,
                                              "order_utm_fields": {"campaign": "c"}})
    patched = base.patched({"lead": {"create_order": False}, "order_utm_fields": {"term": "t"}})
    assert patched.status_sync and patched.lead.create_customer
    assert not patched.lead.create_order
    assert patched.order_utm_fields == {"campaign": "c", "term": "t"}
    assert base.patched({"status_sync": None}).status_sync is False


def test_own_numbers_are_kept_normalised_once_each() -> None:
    options = IntegrationOptions.model_validate({"own_numbers": {"numbers": [
        "+380 44 333 44 00", "380443334400", "044 333-44-01", "(044) 333 44 01",
        "+1 (212) 555-0123"]}})
    assert options.own_numbers.numbers == ("+380443334400", "0443334401", "+12125550123")
    assert options.own_numbers.employee_extensions
    assert IntegrationOptions().own_numbers.numbers == ()


@pytest.mark.parametrize("bad", ["101", "+380 12", "0123", "call me", ""])
def test_an_own_number_that_is_no_phone_number_is_refused_by_its_place(bad: str) -> None:
    with pytest.raises(ValidationError) as caught:
        config(options={"own_numbers": {"numbers": ["+380443334400", bad]}})
    assert caught.value.errors()[0]["loc"] == ("options", "own_numbers", "numbers", 1)


def test_own_numbers_change_by_merge_patch_like_any_option() -> None:
    base = IntegrationOptions.model_validate({"own_numbers": {"numbers": ["+380443334400"]}})
    off = base.patched({"own_numbers": {"employee_extensions": False}})
    assert off.own_numbers.numbers == ("+380443334400",)
    assert not off.own_numbers.employee_extensions
    assert base.patched({"own_numbers": None}).own_numbers.numbers == ()
