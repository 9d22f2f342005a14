"""Activation tells the truth: every broken set-up is refused with what is wrong, never OK."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.crm.methods import (
    REFERENCE_SITES,
    REQUIRED_METHODS,
    TASK_EDIT,
    TELEPHONY_UPLOAD_METHODS,
)
from pipeline.operations.operator import build_command
from schemas.control import CommandResult
from schemas.integration import IntegrationConfig
from tests.unit.pipeline.operations.desk import KEY, SENIOR, Portal, Worker


async def activate(worker: Worker, **fields: Any) -> CommandResult:
    return await worker.send(worker.activation(senior_manager_id=SENIOR, **fields))


def refused(result: CommandResult, *phrases: str) -> bool:
    return result.status == "refused" and all(p in result.message for p in phrases)


# -- the shop ---------------------------------------------------------------------------------

async def test_a_shop_the_portal_does_not_have_is_refused_with_its_shops() -> None:
    portal = Portal()
    portal.methods.append(REFERENCE_SITES)
    portal.shops = {"main": "Main shop", "outlet": "Outlet"}
    worker = Worker(portal)
    result = await activate(worker, site_code="mian")
    assert refused(result, "no shop 'mian'", "'main', 'outlet'"), result.message
    assert "/api/v5/reference/sites" in portal.paths
    assert portal.edits == [] and worker.integrations == {}


async def test_a_shop_that_exists_passes_the_reference_check() -> None:
    portal = Portal()
    portal.methods.append(REFERENCE_SITES)
    portal.sites_available = []  # only the reference knows the shops
    result = await activate(Worker(portal))
    assert result.status == "done", result.message
    assert "/api/v5/reference/sites" in portal.paths


async def test_without_the_reference_the_shops_of_credentials_decide() -> None:
    portal = Portal()
    portal.sites_available = ["main", "outlet"]
    result = await activate(Worker(portal), site_code="gone")
    assert refused(result, "no shop 'gone'", "the key's shops: 'main', 'outlet'"), result.message
    assert "/api/v5/reference/sites" not in portal.paths


async def test_a_shop_that_cannot_be_checked_is_refused_with_the_way_out() -> None:
    portal = Portal()
    portal.sites_available = []
    result = await activate(Worker(portal))
    assert refused(result, "cannot be checked", f"allow {REFERENCE_SITES}"), result.message


async def test_a_key_limited_to_other_shops_is_refused() -> None:
    portal = Portal()
    portal.site_access, portal.sites_available = "access_selective", ["outlet"]
    result = await activate(Worker(portal))
    assert refused(result, "cannot reach the shop 'main'", "limited to 'outlet'"), result.message


# -- the key's methods ------------------------------------------------------------------------

async def test_a_key_without_the_telephony_uploads_is_refused_naming_them() -> None:
    portal = Portal()
    portal.methods = list(REQUIRED_METHODS)
    result = await activate(Worker(portal))
    assert refused(result, *TELEPHONY_UPLOAD_METHODS), result.message
    assert "of the 16 methods" not in result.message and portal.edits == []


async def test_a_key_missing_both_kinds_of_methods_names_all_of_them() -> None:
    portal = Portal()
    portal.methods = [m for m in portal.methods
                      if m not in ("/api/tasks/create", "/api/telephony/call/event")]
    result = await activate(Worker(portal))
    assert refused(result, "lacks 1 of the 16 methods", "/api/tasks/create",
                   "/api/telephony/call/event"), result.message
    assert "/api/telephony/calls/upload" not in result.message


async def test_the_callback_loop_needs_task_edit_and_is_refused_naming_it() -> None:
    portal = Portal()
    assert TASK_EDIT not in portal.methods  # the guide's 16 and the uploads: not enough
    worker = Worker(portal)
    result = await activate(worker, options_patch={"callback_loop": True})
    assert refused(result, TASK_EDIT, "callback_loop"), result.message
    assert "of the 16 methods" not in result.message
    assert portal.edits == [] and worker.integrations == {}
    result = await activate(worker)  # the option off: the same key is enough
    assert result.status == "done", result.message
    portal.methods.append(TASK_EDIT)
    result = await activate(worker, options_patch={"callback_loop": True})
    assert result.status == "done", result.message


# -- the portal's address ---------------------------------------------------------------------

async def test_a_plain_http_portal_is_refused_before_any_request() -> None:
    portal = Portal()
    worker = Worker(portal)
    result = await activate(worker, portal_url="http://acme.retailcrm.ru")
    assert refused(result, "portal_url", "over https"), result.message
    assert not result.message.startswith("internal") and portal.paths == []


async def test_plain_http_on_the_loopback_is_a_double_and_allowed() -> None:
    result = await activate(Worker(Portal()), portal_url="http://127.0.0.1:8089/acme")
    assert result.status == "done", result.message


async def test_an_unreachable_portal_is_refused_naming_the_address() -> None:
    portal = Portal()
    portal.down = True
    result = await activate(Worker(portal))
    assert refused(result, "https://acme.retailcrm.ru/ cannot be reached", "ConnectError",
                   "check the address"), result.message


async def test_an_address_with_no_account_is_refused_as_such() -> None:
    portal = Portal()
    portal.gone = True
    result = await activate(Worker(portal))
    assert refused(result, "no retailCRM account at https://acme.retailcrm.ru/",
                   "Account does not exist."), result.message


# -- the module -------------------------------------------------------------------------------

async def test_the_module_code_starts_with_its_integration_code() -> None:
    worker = Worker(Portal())
    result = await activate(worker, module_code="ringostat-acme")
    assert result.status == "done", result.message
    module = worker.portal.edits[-1]
    assert module["code"] == "ringostat-acme" and module["integrationCode"] == "ringostat"
    assert result.data["module"] == {}, "retailCRM's `info: []` is nothing to report"


async def test_a_module_code_without_the_prefix_is_refused() -> None:
    worker = Worker(Portal())
    result = await activate(worker, module_code="acme-phone")
    assert refused(result, "module_code", "must start with 'ringostat'",
                   "Code prefix must match integrationCode"), result.message
    assert worker.portal.edits == []


async def test_a_stored_module_code_without_the_prefix_loads_but_must_change_to_reactivate(
        ) -> None:
    worker = Worker(Portal())
    await worker.set_up()
    current = worker.directory.config("acme")
    assert current is not None
    legacy = IntegrationConfig.model_validate(
        {**current.model_dump(), "api_key": KEY, "module_code": "rs"}, context={"stored": True})
    await worker.records.write_config(legacy)
    stored = worker.directory.config("acme")
    assert stored is not None and stored.module_code == "rs", "the tenant keeps its config"
    kept = await worker.send(worker.activation())
    assert refused(kept, "module_code", "must start with 'ringostat'"), kept.message
    renamed = await worker.send(worker.activation(module_code="ringostat-acme"))
    assert renamed.status == "done", renamed.message
    assert worker.portal.edits[-1]["code"] == "ringostat-acme"


# -- what it says -----------------------------------------------------------------------------

async def test_a_first_activation_says_new_then_what_the_tenant_was() -> None:
    worker = Worker(Portal())
    first = await activate(worker)
    assert first.message == "active (new; time zone Europe/Kyiv, as named)"
    assert first.data["previous_state"] is None
    again = await worker.send(worker.activation())
    assert again.message == "active (was active)"
    await worker.send(build_command("deactivate", "acme"))
    back = await worker.send(worker.activation())
    assert back.message == "active (was deactivated)"


async def test_status_of_a_tenant_that_never_existed_is_unknown() -> None:
    worker = Worker(Portal())
    result = await worker.send(build_command("status", "nobody"))
    assert result.status == "done" and result.message == "unknown (no integration configured)"
    assert result.data["state"] == "unknown" and "config" not in result.data
    await worker.set_up()
    known = await worker.send(build_command("status", "acme"))
    assert known.message == "active" and known.data["state"] == "active"


# -- options ----------------------------------------------------------------------------------

async def test_options_patches_merge_into_the_tenants_current_options() -> None:
    worker = Worker(Portal())
    result = await activate(worker, options_patch={"status_sync": True,
                                                   "customer_utm_fields": {"source": "utm_s"}})
    assert result.status == "done", result.message
    await worker.send(worker.activation(options_patch={"recording_wait_seconds": 120,
                                                       "lead": {"create_order": False}}))
    config = worker.directory.config("acme")
    assert config is not None
    options = config.options
    assert options.status_sync and options.recording_wait_seconds == 120
    assert options.customer_utm_fields == {"source": "utm_s"}
    assert options.lead.create_customer and not options.lead.create_order

    await worker.send(worker.activation(options_patch={
        "status_sync": None, "customer_utm_fields": {"source": None, "medium": "utm_m"}}))
    config = worker.directory.config("acme")
    assert config is not None
    assert not config.options.status_sync, "null puts a field back to its default"
    assert config.options.customer_utm_fields == {"medium": "utm_m"}
    assert config.options.recording_wait_seconds == 120


async def test_a_reactivation_without_options_keeps_them_and_whole_options_replace() -> None:
    worker = Worker(Portal())
    await activate(worker, options_patch={"status_sync": True, "recording_wait_seconds": 60})
    await worker.send(worker.activation())
    config = worker.directory.config("acme")
    assert config is not None and config.options.recording_wait_seconds == 60
    # The console's settings form sends every option: what it sends is what the tenant has.
    await worker.send(worker.activation(options={"status_sync": False}))
    config = worker.directory.config("acme")
    assert config is not None
    assert not config.options.status_sync and config.options.recording_wait_seconds == 0


@pytest.mark.parametrize(("patch", "problem"), [
    ({"recording_wait_seconds": 7200}, "options.recording_wait_seconds"),
    ({"status_sink": True}, "options.status_sink"),
    ({"lead": {"create_order": "maybe"}}, "options.lead.create_order"),
])
async def test_a_patch_that_gives_invalid_options_is_refused(patch: dict[str, Any],
                                                             problem: str) -> None:
    worker = Worker(Portal())
    result = await activate(worker, options_patch=patch)
    assert refused(result, "options patch", problem), result.message
    assert worker.integrations == {}


async def test_options_and_a_patch_together_are_refused() -> None:
    worker = Worker(Portal())
    result = await activate(worker, options={"status_sync": True},
                            options_patch={"status_sync": False})
    assert refused(result, "cannot be sent together"), result.message
