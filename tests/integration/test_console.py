"""The operator console in real headless Chromium, against a real broker, worker and the double.

One stack, driven as an operator would, step by step in one test: sign in, set up a tenant
and see its first call land, link employees, watch a revoked key break a tenant and its dead letters
appear, re-activate with "send data after re-activation" and watch the replay finish; a
read-only user and a POST without a CSRF token change nothing. Each main page is saved to
docs/console/*.png.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

from pipeline.devtools.demo import wait_for_metric
from pipeline.devtools.devstack import publish_tenants
from pipeline.devtools.localkafka import free_port
from pipeline.devtools.samples import sample_calls, sample_tenants
from tests.integration.stack import Stack
from tests.waiting import wait_until

pytestmark = [pytest.mark.kafka, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "console"
PASSWORD = "e2e console password"
WAIT_MS = 90_000  # the longest any condition below is waited for; failing loudly after


class ConsoleProcess:
    """`python -m pipeline.console` with the stack's settings, on a free port."""

    def __init__(self, env: dict[str, str], workdir: Path) -> None:
        self.env = env
        self.dir = workdir / "console"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = workdir / "console.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def add_user(self, name: str, role: str) -> None:
        command = [sys.executable, "-m", "pipeline.console", "add-user", name, "--role", role,
                   "--password-stdin", "--dir", str(self.dir)]
        subprocess.run(command, input=(PASSWORD + "\n").encode(),  # noqa: S603 - our CLI
                       env=self.env, check=True, capture_output=True)

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(  # noqa: S603 - our own CLI
                [sys.executable, "-m", "pipeline.console", "--port", str(self.port),
                 "--dir", str(self.dir)], env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)

    async def ready(self, within: float = 60) -> None:
        """Serving and caught up with the topics it reads."""
        async with httpx.AsyncClient() as client:
            async def caught_up() -> bool:
                assert self.proc is not None and self.proc.poll() is None, self.tail()
                try:
                    return bool((await client.get(f"{self.url}/healthz")).json()["caught_up"])
                except httpx.HTTPError:
                    return False

            await wait_until(caught_up, "the console to come up and catch up", within=within,
                             every=0.2, detail=self.tail)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class World:
    stack: Stack
    console: ConsoleProcess
    browser: Browser
    operator: Page
    double: httpx.AsyncClient
    parked: list[str] = field(default_factory=list)  # call ids the broken tenant parked

    def url(self, path: str) -> str:
        return self.console.url + path

    def audit(self) -> list[dict[str, Any]]:
        path = self.console.dir / "audit.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()]


async def start_stack(stack: Stack) -> None:
    """The first two tenants the usual way; the third has only its portal in the CRM: it is
    set up through the console."""
    seeded = stack.tenants[:2]
    await publish_tenants(seeded, stack.bootstrap, stack.settings)
    stack.worker.start()
    await asyncio.to_thread(wait_for_metric, stack.metrics_port,
                            "callsync_tenant_updates_total", 2 * len(seeded), stack.worker)


async def new_page(browser: Browser) -> tuple[BrowserContext, Page]:
    context = await browser.new_context(viewport={"width": 1280, "height": 860})
    page = await context.new_page()
    page.set_default_timeout(WAIT_MS)
    return context, page


async def sign_in(world: World, page: Page, name: str) -> None:
    await page.goto(world.url("/"))
    await expect(page.locator("h1")).to_have_text("Sign in")
    await page.fill("#name", name)
    await page.fill("#password", PASSWORD)
    await page.click("button[type=submit]")
    await expect(page.locator("header .who")).to_contain_text(name)


async def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


async def calls_landed(world: World, tenant_id: str, call_ids: set[str],
                       within: float = 90) -> None:
    portal = world.stack.double.state.portals[tenant_id]

    def missing() -> str:
        gone = sorted(call_ids - set(portal.calls))
        return f"{len(gone)} never landed, e.g. {gone[:3]}:\n{world.stack.worker.log_tail()}"

    await wait_until(lambda: call_ids <= set(portal.calls), f"the calls of {tenant_id} to land",
                     within=within, every=0.1, detail=missing)


@pytest.fixture(scope="module")
async def world(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
                ) -> AsyncIterator[World]:
    workdir = tmp_path_factory.mktemp("console")
    stack = Stack(kafka_bootstrap, workdir, sample_tenants(3))
    console = ConsoleProcess(stack.env, workdir)
    try:
        await start_stack(stack)
        console.add_user("olga", "operator")
        console.add_user("vera", "viewer")
        console.start()
        await console.ready()
        async with async_playwright() as playwright, httpx.AsyncClient(
                base_url=stack.double.url) as double:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM,
                                                       args=CHROMIUM_ARGS)
            _, operator = await new_page(browser)
            yield World(stack, console, browser, operator, double)
            await browser.close()
    finally:
        console.stop()
        await asyncio.to_thread(stack.stop)


async def step_sign_in_and_see_the_tenants(world: World) -> None:
    page = world.operator
    await page.goto(world.url("/tenants/acme"))
    await expect(page).to_have_url(world.url("/login?next=/tenants/acme"))
    await page.fill("#name", "olga")
    await page.fill("#password", "not the password")
    await page.click("button[type=submit]")
    await expect(page.locator(".note.bad")).to_have_text("Wrong name or password.")
    await shot(page, "login")
    await sign_in(world, page, "olga")
    await page.goto(world.url("/"))
    for tenant in ("acme", "globex"):
        await expect(page.locator(f"tr[data-tenant={tenant}] .state")).to_have_text("active")
    assert await page.locator("tr[data-tenant=initech]").count() == 0, "not set up yet"


async def step_set_up_a_tenant_and_see_its_first_call_land(world: World) -> None:
    page = world.operator
    tenant = world.stack.tenants[2]
    tid = tenant.config.tenant_id
    await page.goto(world.url("/"))
    await page.click("text=Set up a tenant")
    await page.fill("input[name=tenant]", tid)
    await page.click("text=Continue")
    await expect(page.locator(".note.info")).to_contain_text("No integration is configured")
    await page.fill("#portal_url", f"{world.stack.double_url}/{tid}")
    await page.fill("#admin_email", f"admin@{tid}.example.com")
    await page.fill("#site_code", "main")
    await page.fill("#api_key", tenant.config.api_key.get_secret_value())
    await page.fill("#senior_manager_id", str(tenant.senior_manager_id))
    await page.select_option("#timezone", tenant.config.timezone)
    await page.fill("input[name=utm_customer_source]", "ringostat_utm_source")
    await page.fill("input[name=utm_order_campaign]", "ringostat_utm_campaign")
    await page.check("input[name=status_sync]")
    own_line = tenant.sample.tracking_numbers[-1]  # written as people write it
    await page.fill("#own_numbers", f"{own_line[:2]} {own_line[2:5]} {own_line[5:8]}-"
                    f"{own_line[8:10]}-{own_line[10:]}")
    await page.check("input[name=callback_loop]")
    assert await page.locator("#send_after_reactivation").count() == 0, "not for a new one"
    await shot(page, "settings")
    await page.click("#activate")
    await expect(page.locator("#answer-status")).to_have_text("done")
    await expect(page.locator("#answer-message")).to_contain_text("active")

    employee, extension = tenant.sample.employees[0]  # nobody linked yet: the senior's
    first = [{**call, "employee": {"id": employee, "extension": extension}}
             for call in sample_calls([tenant.sample], 1, seed=3)]
    own = {k: v for k, v in first[0].items() if k not in ("employee", "recording_url")}
    own.update(call_id=f"{tid}-own", client_phone=own_line, status="no_answer", talk_seconds=0)
    # The call-back loop from the settings form: a missed call's task, completed by the next.
    loop_phone = first[0]["client_phone"][:-3] + ("000" if first[0]["client_phone"][-3:] !=
                                                  "000" else "001")
    start = datetime.fromisoformat(first[0]["started_at"])
    missed = {**own, "call_id": f"{tid}-missed", "client_phone": loop_phone,
              "started_at": (start - timedelta(minutes=20)).isoformat()}
    back = {**first[0], "call_id": f"{tid}-back", "client_phone": loop_phone,
            "status": "answered", "talk_seconds": 30,
            "started_at": (start - timedelta(minutes=5)).isoformat()}
    await world.stack.publish_calls([missed, back, *first, own])
    await calls_landed(world, tid, {first[0]["call_id"], own["call_id"], missed["call_id"],
                                    back["call_id"]})
    portal = world.stack.double.state.portals[tid]
    assert [t["complete"] for t in portal.tasks.values() if t.get("phone") == loop_phone] \
        == [True], "the call-back loop from the settings form completed the missed call's task"
    assert [c for c in portal.customers.values() if c["phones"][0]["number"] == own_line] \
        == [] and [t for t in portal.tasks.values() if t.get("phone") == own_line] == [], \
        "an own number from the settings form is no lead"
    await page.goto(world.url(f"/tenants/{tid}"))
    await expect(page.locator("#last-delivery")).to_contain_text("UTC")
    await expect(page.locator("#live")).to_contain_text(f"admin@{tid}.example.com")
    await expect(page.locator("#fallbacks")).to_contain_text(employee)
    await shot(page, "tenant")
    await page.goto(world.url("/"))
    await expect(page.locator(f"tr[data-tenant={tid}] td.fallbacks")).to_have_text("1")


async def add_manager(world: World, tenant_id: str, name: str) -> int:
    response = await world.double.post(f"/_admin/portals/{tenant_id}/users", json={
        "firstName": name, "email": f"{name.lower()}@{tenant_id}.example.com"})
    response.raise_for_status()
    return int(response.json()["id"])


async def step_link_employees_and_choose_the_senior_manager(world: World) -> None:
    page = world.operator
    tid = world.stack.tenants[0].config.tenant_id
    nadia = await add_manager(world, tid, "Nadia")
    oksana = await add_manager(world, tid, "Oksana")
    await page.goto(world.url(f"/tenants/{tid}/employees"))
    new = page.locator("#links tr.new")
    await new.locator("input[name=employee_id]").fill("emp-9")
    await new.locator("input[name=extension]").fill("109")
    await new.locator("select").select_option(str(nadia))
    await new.locator("button").click()
    await expect(page.locator("#answer")).to_contain_text("link saved")
    row = page.locator("#links tr[data-employee=emp-9]")
    await expect(row.locator("select")).to_have_value(str(nadia))

    # chosen from the synced managers, but deactivated in the CRM before the link is sent
    await new.locator("input[name=employee_id]").fill("emp-10")
    await new.locator("select").select_option(str(oksana))
    changed = await world.double.patch(f"/_admin/portals/{tid}/users/{oksana}",
                                       json={"active": False})
    changed.raise_for_status()
    await new.locator("button").click()
    await expect(page.locator("#answer")).to_contain_text("link refused")
    await expect(page.locator("#answer")).to_contain_text(
        f"CRM user {oksana} is not an active user of a manager group")
    assert await page.locator("#links tr[data-employee=emp-10]").count() == 0

    await page.locator("#senior-form select").select_option(str(nadia))
    await page.locator("#senior-form button").click()
    await expect(page.locator("#answer")).to_contain_text("senior saved")
    await expect(page.locator("#links tr[data-employee=emp-9]")).to_contain_text(
        "senior manager")
    await shot(page, "employees")
    module = world.stack.double.state.portals[tid].modules[
        world.stack.tenants[0].config.module_code]
    codes = module["integrations"]["telephony"]["additionalCodes"]
    assert {"userId": nadia, "code": "109"} in codes, "the CRM routes emp-9's pop-ups"


async def step_a_revoked_key_breaks_the_tenant_and_its_dead_letters_appear(
        world: World) -> None:
    page = world.operator
    tenant = world.stack.tenants[0]
    tid = tenant.config.tenant_id
    revoked = await world.double.post(f"/_admin/portals/{tid}/keys/revoke",
                                      json={"key": tenant.config.api_key.get_secret_value()})
    revoked.raise_for_status()
    calls = sample_calls([tenant.sample], 12, seed=41, span=timedelta(hours=2))
    await world.stack.publish_calls(calls)
    await page.goto(world.url("/"))
    row = page.locator(f"tr[data-tenant={tid}]")
    await expect(row.locator(".state")).to_have_text("broken")
    await expect(row).to_contain_text("InvalidApiKey")
    await page.goto(world.url(f"/tenants/{tid}/letters"))
    await expect(page.locator("#letters tr.letter")).to_have_count(len(calls))
    for call in calls[:3]:
        await expect(page.locator("#letters")).to_contain_text(call["call_id"])
    await expect(page.locator("#letters")).to_contain_text(world.stack.calls_topic)
    await shot(page, "letters")
    await page.goto(world.url("/"))
    await expect(page.locator(f"tr[data-tenant={tid}] td.num").first).to_have_text(
        str(len(calls)))
    await shot(page, "tenants")
    world.parked = [c["call_id"] for c in calls]


async def step_reactivation_with_the_checkbox_replays_what_was_parked(world: World) -> None:
    page = world.operator
    tenant = world.stack.tenants[0]
    tid = tenant.config.tenant_id
    added = await world.double.post(f"/_admin/portals/{tid}/keys",
                                    json={"key": "rotated-console-key", "label": "rotated"})
    added.raise_for_status()
    await page.goto(world.url(f"/tenants/{tid}/settings"))
    await expect(page.locator("#portal_url")).to_have_value(str(tenant.config.portal_url))
    await page.fill("#api_key", "rotated-console-key")
    await page.check("#send_after_reactivation")
    await page.click("#activate")
    await expect(page.locator("#answer-status")).to_have_text("done")
    await expect(page.locator("#progress-text")).to_contain_text("remaining 0")
    await expect(page.locator("#replay-progress")).to_have_attribute("value", "100")
    await expect(page.locator("#answer-box")).to_contain_text("progress")  # as it went
    await shot(page, "replay")
    await calls_landed(world, tid, set(world.parked))
    await page.goto(world.url("/"))
    await expect(page.locator(f"tr[data-tenant={tid}] .state")).to_have_text("active")
    await expect(page.locator(f"tr[data-tenant={tid}] td.num").first).to_have_text("0")


async def step_a_read_only_user_cannot_change_anything(world: World) -> None:
    context, page = await new_page(world.browser)
    try:
        await sign_in(world, page, "vera")
        tid = world.stack.tenants[1].config.tenant_id
        assert await page.locator("text=Set up a tenant").count() == 0
        await page.goto(world.url(f"/tenants/{tid}"))
        assert await page.locator("button", has_text="Deactivate").count() == 0
        await page.goto(world.url(f"/tenants/{tid}/settings"))
        await expect(page.locator("#activate")).to_be_disabled()
        await page.goto(world.url(f"/tenants/{tid}/employees"))
        await expect(page.locator("#senior-form select")).to_be_disabled()
        assert await page.locator("button", has_text="Unlink").count() == 0
        token = await page.locator("input[name=csrf_token]").first.get_attribute("value")
        assert token
        before = len(world.audit())
        for path, form in ((f"/tenants/{tid}/deactivate", {"reason": "vera was here"}),
                           (f"/tenants/{tid}/employees/unlink", {"employee_id": "g-1"}),
                           (f"/tenants/{tid}/replay", {"since": "2026-01-01T00:00",
                                                       "until": "2026-01-02T00:00"})):
            response = await page.request.post(world.url(path),
                                               form={**form, "csrf_token": token})
            assert response.status == 403, path
            assert "read-only" in await response.text()
        assert [e for e in world.audit()[before:] if e.get("user") == "vera"
                and e["type"] not in ("status", "employees")] == []
    finally:
        await context.close()


async def step_a_post_without_a_csrf_token_is_refused(world: World) -> None:
    page = world.operator
    tid = world.stack.tenants[1].config.tenant_id
    before = len(world.audit())
    forms: list[dict[str, str | float | bool]] = [
        {"reason": "no token"}, {"reason": "forged", "csrf_token": "forged"}]
    for form in forms:
        response = await page.request.post(world.url(f"/tenants/{tid}/deactivate"), form=form)
        assert response.status == 403
        assert "CSRF token is missing or wrong" in await response.text()
    assert world.audit()[before:] == [], "nothing was sent"
    await page.goto(world.url("/"))
    await expect(page.locator(f"tr[data-tenant={tid}] .state")).to_have_text("active")


async def step_the_audit_shows_who_sent_what_and_the_answers(world: World) -> None:
    page = world.operator
    await page.goto(world.url("/audit"))
    audit = page.locator("#audit")
    for kind in ("activate", "link", "senior"):
        await expect(audit).to_contain_text(kind)
    await expect(audit).to_contain_text("olga")
    await expect(audit).not_to_contain_text("vera")
    await expect(audit).to_contain_text("refused")
    await shot(page, "audit")
    text = (world.console.dir / "audit.jsonl").read_text()
    for tenant in world.stack.tenants:
        assert tenant.config.api_key.get_secret_value() not in text
    assert "rotated-console-key" not in text


STEPS = [
    step_sign_in_and_see_the_tenants,
    step_set_up_a_tenant_and_see_its_first_call_land,
    step_link_employees_and_choose_the_senior_manager,
    step_a_revoked_key_breaks_the_tenant_and_its_dead_letters_appear,
    step_reactivation_with_the_checkbox_replays_what_was_parked,
    step_a_read_only_user_cannot_change_anything,
    step_a_post_without_a_csrf_token_is_refused,
    step_the_audit_shows_who_sent_what_and_the_answers,
]


@pytest.mark.timeout(900)
async def test_the_console_as_an_operator_uses_it(world: World) -> None:
    """The steps in order, as one test: each builds on those before it (an operator signed
    in, a tenant set up, a key revoked...), and xdist's worksteal, which moves tests between
    processes, once split them between two processes, each with a world of its own."""
    for step in STEPS:
        await step(world)
