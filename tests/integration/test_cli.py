"""The operator CLI against a real broker and worker: tenants list, unknown tenants, activate's
options merge, rekey --all."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pipeline.__main__ import main
from pipeline.devtools.crmdouble.admin import KeySpec, PortalSpec, UserSpec, seed_portal
from pipeline.devtools.samples import sample_tenants
from tests.integration.stack import Stack
from tests.waiting import wait_until

pytestmark = pytest.mark.kafka

FRESH_KEY = "key-fresh-cli"
FRESH_SENIOR = 7


@pytest.fixture
async def stack(kafka_bootstrap: str, tmp_path: Path,
                monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Stack]:
    s = Stack(kafka_bootstrap, tmp_path, sample_tenants(2))
    await s.start()
    # The CLI reads the settings the worker has (its operator key, KEKs and topics).
    for name in [n for n in os.environ if n.startswith("CALLSYNC_")]:
        monkeypatch.delenv(name)
    for name, value in s.env.items():
        if name.startswith("CALLSYNC_"):
            monkeypatch.setenv(name, value)
    yield s
    await asyncio.to_thread(s.stop)


async def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Exit status, stdout and stderr of `python -m pipeline <argv>` (run off the loop: it runs
    its own)."""
    capsys.readouterr()
    status = await asyncio.to_thread(main, list(argv))
    out, err = capsys.readouterr()
    return status, out, err


async def listed(capsys: pytest.CaptureFixture[str], tenant: str) -> list[str]:
    """`tenants list` once it shows `tenant` (the desk's record is on its way to the topic)."""
    seen: list[str] = []

    async def shown() -> list[str] | None:
        status, out, _ = await cli(capsys, "tenants", "list")
        assert status == 0
        seen[:] = out.split()
        return seen if tenant in seen else None

    return await wait_until(shown, f"{tenant} in `tenants list`", within=10, every=0.5,
                            detail=lambda: repr(seen))


async def test_tenants_list_unknown_tenants_and_rekey_all(
        stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    ids = sorted(t.config.tenant_id for t in stack.tenants)
    status, out, _ = await cli(capsys, "tenants", "list")
    assert status == 0 and out.split() == ids

    for argv in (["status", "--tenant", "fresh"], ["deactivate", "--tenant", "fresh"],
                 ["replay", "--tenant", "fresh"], ["rekey", "--tenant", "fresh"],
                 ["employees", "list", "--tenant", "fresh"]):
        status, out, err = await cli(capsys, *argv)
        assert status == 1, argv
        assert "unknown tenant 'fresh': no integration is configured" in err, argv
        assert "tenants list" in err and out == ""

    status, out, _ = await cli(capsys, "rekey", "--all")
    assert status == 0 and f"re-encrypted {len(ids)} of {len(ids)} tenants" in out


async def test_a_new_tenant_from_the_cli_with_options_merged_by_the_worker(
        stack: Stack, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    seed_portal(stack.double.state, PortalSpec(
        name="fresh", keys=[KeySpec(key=FRESH_KEY, label="fresh")],
        users=[UserSpec(id=FRESH_SENIOR, firstName="Senior")]))
    monkeypatch.setenv("CALLSYNC_TENANT_API_KEY", FRESH_KEY)
    activate = ["activate", "--tenant", "fresh", "--portal-url", f"{stack.double_url}/fresh",
                "--admin-email", "admin@fresh.example.com", "--site", "main",
                "--follow", "120"]

    status, out, _ = await cli(capsys, *activate, "--module-code", "fresh-phone",
                               "--senior-manager", str(FRESH_SENIOR))
    assert status == 1 and "must start with 'ringostat'" in out

    status, out, _ = await cli(capsys, *activate, "--senior-manager", str(FRESH_SENIOR),
                               "--options", '{"status_sync": true}')
    assert status == 0 and "done: active (new; time zone " in out, out
    assert "fresh" in await listed(capsys, "fresh")

    status, out, _ = await cli(capsys, *activate, "--options",
                               '{"recording_wait_seconds": 30, "lead": {"create_order": false}}')
    assert status == 0 and "done: active (was active)" in out, out

    result = await stack.command("status", "fresh")
    options = result.data["config"]["options"]
    assert options["status_sync"] is True, "kept from the first activation"
    assert options["recording_wait_seconds"] == 30
    assert options["lead"] == {"create_customer": True, "create_order": False,
                               "at_answer": False}
    module = stack.double.state.portals["fresh"].modules["ringostat"]
    assert module["integrationCode"] == "ringostat" and module["active"] is True

    with pytest.raises(SystemExit, match="recording_wait_seconds"):
        await cli(capsys, *activate, "--options", '{"recording_wait_seconds": -1}')
