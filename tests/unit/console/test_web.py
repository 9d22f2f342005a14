"""The console's pages over a fake worker: sign-in, CSRF, roles, commands and what is shown."""

from __future__ import annotations

import json
from typing import Any

from tests.unit.console.conftest import PASSWORD, Web, default_answer


async def test_every_page_but_sign_in_needs_an_account(web: Web) -> None:
    response = await web.client.get("/tenants/acme", allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"] == "/login?next=/tenants/acme"
    login = await web.client.get("/login")
    assert login.status == 200
    assert "script-src" not in login.headers["Content-Security-Policy"], "'self' only"
    assert login.headers["X-Frame-Options"] == "DENY"
    static = await web.client.get("/static/htmx.min.js")
    assert static.status == 200 and "max-age" in static.headers["Cache-Control"]
    assert (await web.client.get("/healthz")).status == 200
    polled = await web.client.get("/tenants/rows", headers={"HX-Request": "true"})
    assert polled.status == 401 and polled.headers["HX-Redirect"] == "/login"


async def test_sign_in_goes_back_only_to_a_page_of_the_console(web: Web) -> None:
    token = await web.csrf("/login")
    for target, expected in (("/audit", "/audit"), ("//evil.example", "/"),
                             ("https://evil.example/", "/")):
        response = await web.client.post("/login", allow_redirects=False, data={
            "name": "olga", "password": PASSWORD, "csrf_token": token, "next": target})
        assert response.headers["Location"] == expected
        token = await web.csrf("/")


async def test_sign_in_sets_a_signed_http_only_cookie_and_a_new_csrf_token(web: Web) -> None:
    before = await web.csrf("/login")
    assert await web.sign_in("olga", "wrong password!") == 401
    assert await web.sign_in("nobody") == 401
    assert await web.sign_in("olga") == 303
    cookie = next(c for c in web.client.session.cookie_jar if c.key == "callsync_console")
    assert cookie["httponly"] and cookie["samesite"] == "Strict"
    page = await (await web.client.get("/")).text()
    assert "olga" in page and "operator" in page
    assert await web.csrf("/") != before, "a sign-in gets a new CSRF token"


async def test_a_post_without_or_with_a_wrong_csrf_token_is_refused(web: Web) -> None:
    assert await web.sign_in("olga") == 303
    for data in ({"reason": "x"}, {"reason": "x", "csrf_token": "forged"}):
        response = await web.client.post("/tenants/acme/deactivate", data=data,
                                         allow_redirects=False)
        assert response.status == 403
        assert "CSRF token is missing or wrong" in await response.text()
    assert web.worker.sent == [], "nothing was sent"
    token = await web.csrf()
    response = await web.client.post("/tenants/acme/deactivate", allow_redirects=False,
                                     data={"reason": "maintenance", "csrf_token": token})
    assert response.status == 303
    assert response.headers["Location"].startswith("/commands/deactivate-")
    # the header htmx sends is as good as the form field
    response = await web.client.post("/tenants/refresh", headers={"X-CSRF-Token": token},
                                     allow_redirects=False)
    assert response.status == 303


async def test_the_sign_in_form_needs_its_token_too(web: Web) -> None:
    await web.client.get("/login")
    response = await web.client.post("/login", data={"name": "olga", "password": PASSWORD})
    assert response.status == 403
    page = await (await web.client.get("/", allow_redirects=False)).text()
    assert "olga" not in page


async def test_a_viewer_reads_but_cannot_send_a_changing_command(web: Web) -> None:
    assert await web.sign_in("vera") == 303
    token = await web.csrf()
    for path, data in (("/tenants/acme/deactivate", {"reason": "x"}),
                       ("/tenants/acme/replay", {"since": "2026-01-01T00:00",
                                                 "until": "2026-01-02T00:00"}),
                       ("/tenants/acme/employees/link", {"employee_id": "emp-1",
                                                         "crm_user_id": "27"}),
                       ("/tenants/acme/employees/unlink", {"employee_id": "emp-1"}),
                       ("/tenants/acme/employees/senior", {"crm_user_id": "27"}),
                       ("/tenants/acme/settings", {"portal_url": "https://a.retailcrm.ru",
                                                   "admin_email": "a@example.com",
                                                   "site_code": "main", "api_key": "k"})):
        response = await web.client.post(path, data={**data, "csrf_token": token},
                                         allow_redirects=False)
        assert response.status == 403, path
        assert "read-only" in await response.text()
    assert set(web.worker.kinds()) <= {"status"}, "a viewer may only ask"
    page = await (await web.client.get("/tenants/acme/employees/table")).text()
    assert "Unlink" not in page and "disabled" in page


async def test_activation_sends_the_seed_form_and_never_shows_or_audits_the_key(
        web: Web) -> None:
    assert await web.sign_in("olga") == 303
    page = await (await web.client.get("/tenants/acme/settings")).text()
    assert 'value="https://acme.retailcrm.ru/"' in page, "prefilled from the worker's config"
    assert "send_after_reactivation" not in page, "the checkbox is for broken or deactivated"
    token = await web.csrf()
    secret = "tenant-secret-api-key-42"
    response = await web.client.post("/tenants/acme/settings", allow_redirects=False, data={
        "csrf_token": token, "portal_url": "https://acme.retailcrm.ru",
        "admin_email": "admin@acme.example.com", "site_code": "main", "api_key": secret,
        "timezone": "Europe/Kyiv", "module_code": "ringostat", "lead_create_customer": "on",
        "lead_at_answer": "on", "missed_call_task": "on", "order_method": "phone",
        "popup_max_age_seconds": "60", "recording_wait_seconds": "120", "status_sync": "on",
        "utm_customer_source": "ringostat_utm_source", "utm_order_campaign": "utm_campaign"})
    assert response.status == 303, await response.text()
    command = next(c for c in web.worker.sent if c["type"] == "activate")
    assert command["operator"] == "console:olga"
    assert secret not in json.dumps(command), "the key travels encrypted for its tenant"
    keyring = web.console.settings.secrets.keyring()
    assert keyring is not None
    assert keyring.decrypt(command["api_key"], tenant_id="acme") == secret
    assert command["options"]["lead"] == {"create_customer": True, "create_order": False,
                                          "at_answer": True}
    assert command["options"]["recording_wait_seconds"] == 120
    assert command["options"]["status_sync"] is True
    assert command["options"]["customer_utm_fields"] == {"source": "ringostat_utm_source"}
    assert command["options"]["order_utm_fields"] == {"campaign": "utm_campaign"}
    assert command["send_after_reactivation"] is False
    answer = await (await web.client.get(response.headers["Location"])).text()
    assert "activate done" in answer
    assert secret not in answer
    assert secret not in (web.dir / "audit.jsonl").read_text()
    for path in ("/", "/audit", "/tenants/acme", "/tenants/acme/settings"):
        assert secret not in await (await web.client.get(path)).text()


async def test_a_bad_settings_form_is_shown_again_with_reasons_and_nothing_is_sent(
        web: Web) -> None:
    assert await web.sign_in("olga") == 303
    token = await web.csrf()
    response = await web.client.post("/tenants/acme/settings", data={
        "csrf_token": token, "portal_url": "http://acme.example.com", "admin_email": "nope",
        "site_code": "", "api_key": "", "recording_wait_seconds": "9999"})
    assert response.status == 400
    page = await response.text()
    assert "reached over https" in page and "the portal&#39;s API key is needed" in page
    assert "recording_wait_seconds" in page
    assert "activate" not in web.worker.kinds()


async def test_the_reactivation_checkbox_appears_for_a_broken_tenant(web: Web) -> None:
    web.console.overview.apply_state(b'"acme"', json.dumps(
        {"state": "broken", "reason": "InvalidApiKey", "parked": 4}).encode())
    assert await web.sign_in("olga") == 303
    page = await (await web.client.get("/tenants/acme/settings")).text()
    assert 'name="send_after_reactivation"' in page and "Re-activate" in page


async def test_employees_table_and_a_refused_link_shows_the_reason(web: Web) -> None:
    def answer(command: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
        if command["type"] == "link":
            return "refused", "CRM user 29 is not an active user of a manager group " \
                              "(manager)", {}
        return default_answer(command)

    web.worker.answer = answer
    assert await web.sign_in("olga") == 303
    table = await (await web.client.get("/tenants/acme/employees/table")).text()
    assert "emp-1" in table and "emp-9" in table and "Olena" in table
    assert "not linked to a CRM manager" in table
    token = await web.csrf()
    response = await web.client.post("/tenants/acme/employees/link", data={
        "csrf_token": token, "employee_id": "emp-9", "extension": "109", "crm_user_id": "29"})
    page = await response.text()
    assert "link refused" in page
    assert "CRM user 29 is not an active user of a manager group" in page
    link = next(c for c in web.worker.sent if c["type"] == "link")
    assert link["employee_id"] == "emp-9" and link["crm_user_id"] == 29


async def test_letters_and_the_audit_log(web: Web) -> None:
    overview = web.console.overview
    overview.apply_letter("dead", [("callsync-tenant", b"acme"), ("callsync-call-id", b"c-1"),
                                   ("callsync-reason", b"InvalidApiKey"),
                                   ("callsync-broken", b"1"),
                                   ("callsync-source-topic", b"callsync.calls"),
                                   ("callsync-source-partition", b"2"),
                                   ("callsync-source-offset", b"17"),
                                   ("callsync-time", b"2026-11-25T10:03:00+00:00")],
                          topic="callsync.dead-letter", partition=2, offset=5)
    assert await web.sign_in("olga") == 303
    page = await (await web.client.get("/tenants/acme/letters")).text()
    assert "c-1" in page and "InvalidApiKey" in page and "callsync.calls[2]@17" in page
    assert "2026-11-25 10:03:00 UTC" in page
    token = await web.csrf()
    response = await web.client.post("/tenants/acme/replay", data={
        "csrf_token": token, "since": "2026-11-23T00:00", "until": "2026-11-25T12:00"})
    assert response.status == 200
    replay = next(c for c in web.worker.sent if c["type"] == "replay")
    assert replay["since"] == "2026-11-23T00:00:00+03:00" or replay["since"].startswith(
        "2026-11-23T00:00:00")
    audit = await (await web.client.get("/audit")).text()
    assert "replay" in audit and "olga" in audit and "replay done" in audit
    assert "status" not in audit.split("<tbody>")[1], "reads are hidden unless asked for"


async def test_repeated_failures_lock_a_name_for_a_while(web: Web) -> None:
    for _ in range(5):
        assert await web.sign_in("vera", "not her password") == 401
    assert await web.sign_in("vera") == 429, "even the right password waits"
    assert await web.sign_in("olga") == 303, "other names are not affected"


async def test_a_new_tenants_zone_can_be_left_to_the_account_an_existing_ones_cannot(
        web: Web) -> None:
    def answer(command: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
        if command["tenant_id"] == "newco" and command["type"] == "status":
            return "done", "not set up", {"state": "unknown"}  # no config: a first set-up
        return default_answer(command)

    web.worker.answer = answer
    assert await web.sign_in("olga") == 303
    new = await (await web.client.get("/tenants/newco/settings")).text()
    assert '<option value="" selected>The account\'s own' in new
    assert 'name="senior_manager_id"' in new
    existing = await (await web.client.get("/tenants/acme/settings")).text()
    assert "The account's own" not in existing
    assert '<option value="Europe/Kyiv" selected>' in existing
    response = await web.client.post("/tenants/newco/settings", allow_redirects=False, data={
        "csrf_token": await web.csrf(), "portal_url": "https://newco.retailcrm.ru",
        "admin_email": "admin@newco.example.com", "site_code": "main", "api_key": "k-newco-1",
        "senior_manager_id": "350", "timezone": "", "module_code": "ringostat",
        "order_method": "phone", "popup_max_age_seconds": "60",
        "recording_wait_seconds": "0"})
    assert response.status == 303, await response.text()
    command = next(c for c in web.worker.sent if c["type"] == "activate")
    assert command["tenant_id"] == "newco" and "timezone" not in command
