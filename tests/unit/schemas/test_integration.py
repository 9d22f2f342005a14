"""Tenant integration config: validation and a key that never prints."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from schemas import IntegrationConfig

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
])
def test_bad_values_are_refused_by_name(field: str, value: str) -> None:
    with pytest.raises(ValidationError) as caught:
        config(**{field: value})
    assert caught.value.errors()[0]["loc"][0] == field
    assert KEY not in str(caught.value)


def test_plain_http_is_allowed_only_on_loopback() -> None:
    assert config(portal_url="http://127.0.0.1:8080/acme").portal_url.host == "127.0.0.1"
