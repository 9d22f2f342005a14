"""The operator's side of the control topic: signed commands out, results followed until done."""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TextIO

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from pydantic import ValidationError

from pipeline.config import Settings
from pipeline.signing import sign
from schemas.control import CommandResult

__all__ = ["FINAL", "build_command", "configured_tenants", "list_tenants", "print_employees",
           "progress_line", "read_answer", "rekey_all", "run", "seal_api_key",
           "send_and_follow",
           "unknown_tenant"]

FINAL = ("done", "refused", "failed")


def build_command(kind: str, tenant_id: str, *, operator: str = "cli",
                  **fields: Any) -> dict[str, Any]:
    return {"type": kind, "command_id": f"{kind}-{uuid.uuid4().hex[:12]}",
            "tenant_id": tenant_id, "issued_at": datetime.now(UTC).isoformat(),
            "operator": operator, **{k: v for k, v in fields.items() if v is not None}}


def seal_api_key(settings: Settings, tenant_id: str, api_key: str) -> str:
    """The tenant's key as `activate` carries it: encrypted for this tenant with the KEK."""
    keyring = settings.secrets.keyring()
    if keyring is None:
        raise SystemExit("CALLSYNC_SECRETS__KEYS is not set: the tenant's key is never sent in "
                         "clear (use the workers' key-encryption keys)")
    return keyring.encrypt(api_key, tenant_id=tenant_id)


async def configured_tenants(settings: Settings, *, within: float = 60.0) -> list[str]:
    """Tenants with an integration: the keys on the integrations topic and in the changelog
    of the integrations table (tenants activated before the desk published its records)."""
    options = settings.kafka.client_options()
    names = [settings.topics.integrations, f"{settings.app_id}-integrations-changelog"]
    admin = AIOKafkaAdminClient(**options)
    await admin.start()
    try:
        # Only topics that exist are described: a metadata request for a missing one would
        # create it on a broker that auto-creates topics (with the wrong partition count).
        existing = set(await admin.list_topics())
        described = await admin.describe_topics([n for n in names if n in existing]) \
            if existing & set(names) else []
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(**options, enable_auto_commit=False)
    await consumer.start()
    found: set[str] = set()
    try:
        for topic in described:
            tps = [TopicPartition(topic["topic"], p["partition"])
                   for p in topic.get("partitions") or ()]
            if topic.get("error_code") or not tps:
                continue  # no such topic (yet)
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            latest: dict[str, bool] = {}
            deadline = time.monotonic() + within
            while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
                if time.monotonic() > deadline:
                    raise SystemExit(f"could not read {topic['topic']} to its end in "
                                     f"{within:.0f}s")
                for messages in (await consumer.getmany(timeout_ms=500)).values():
                    for m in messages:
                        if m.key:
                            latest[_tenant_of(m.key)] = bool(m.value)
            found |= {tenant for tenant, present in latest.items() if present}
    finally:
        await consumer.stop()
    return sorted(found)


def _tenant_of(key: bytes) -> str:
    text = key.decode(errors="replace")
    try:  # a table's changelog may carry the key JSON-encoded
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, str) else text


def list_tenants(settings: Settings, *, out: TextIO | None = None) -> int:
    """`tenants list`: every tenant with an integration, one a line."""
    out = sys.stdout if out is None else out
    tenants = asyncio.run(configured_tenants(settings))
    if not tenants:
        print("no tenant has an integration", file=sys.stderr)
    for tenant in tenants:
        print(tenant, file=out)
    return 0


def unknown_tenant(settings: Settings, tenant_id: str) -> str | None:
    """Why a command for this tenant is not sent (it has no integration), or None."""
    if tenant_id in asyncio.run(configured_tenants(settings)):
        return None
    return (f"unknown tenant {tenant_id!r}: no integration is configured for it on "
            f"{settings.topics.integrations} (`python -m pipeline tenants list` names the "
            "configured ones; `activate` sets one up)")


def rekey_all(settings: Settings, *, follow: float = 60.0) -> int:
    """A signed `rekey` for every configured tenant, one after the other; 0 if all are done."""
    tenants = asyncio.run(configured_tenants(settings))
    if not tenants:
        print("no tenant has an integration")
        return 0
    failed = []
    for tenant in tenants:
        print(f"{tenant}: ", end="", flush=True)
        if run(settings, build_command("rekey", tenant), follow=follow) != 0:
            failed.append(tenant)
    print(f"re-encrypted {len(tenants) - len(failed)} of {len(tenants)} tenants"
          + (f"; not done: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


def progress_line(result: CommandResult, width: int = 30) -> str:
    data = result.data
    if "scanned" in data:
        total = data["scanned"] + data.get("remaining", 0)
        done = data["scanned"] / total if total else 1.0
        bar = "#" * int(done * width) + "." * (width - int(done * width))
        return (f"[{bar}] {done:4.0%}  read {data['scanned']}, replayed "
                f"{data.get('submitted', 0)}, settled {data.get('settled', 0)}, "
                f"remaining {data.get('remaining', 0)}")
    return f"{result.status}: {result.message}"


def read_answer(value: bytes | None) -> CommandResult | None:
    """A worker's answer on the results topic; None for a record that is not one (only the
    workers should write there: README, "What the operator must still do")."""
    try:
        return CommandResult.model_validate_json(value or b"")
    except ValidationError:
        return None


async def send_and_follow(settings: Settings, command: dict[str, Any], *, follow: float,
                          out: TextIO | None = None) -> CommandResult | None:
    """Publish the signed command, then read its results until a final one or `follow` s
    (progress on `out`, by default the standard output of the moment)."""
    out = sys.stdout if out is None else out
    if settings.operator_key is None:
        raise SystemExit("CALLSYNC_OPERATOR_KEY is not set: commands cannot be signed")
    key = settings.operator_key.get_secret_value().encode()
    options = settings.kafka.client_options()
    results = AIOKafkaConsumer(**options, enable_auto_commit=False)
    await results.start()
    try:
        tp = TopicPartition(settings.topics.results, 0)
        results.assign([tp])
        await results.seek_to_end(tp)
        position = await results.position(tp)  # only answers that come after the command
        producer = AIOKafkaProducer(**options, acks="all")
        await producer.start()
        try:
            envelope = {"command": command, "signature": sign(command, key)}
            await producer.send_and_wait(settings.topics.control,
                                         json.dumps(envelope).encode(),
                                         key=command["tenant_id"].encode())
        finally:
            await producer.stop()
        results.seek(tp, position)
        deadline = time.monotonic() + follow
        last: CommandResult | None = None
        while time.monotonic() < deadline:
            batch = await results.getmany(tp, timeout_ms=500)
            for message in batch.get(tp, []):
                if message.key != command["command_id"].encode():
                    continue
                answer = read_answer(message.value)
                if answer is None:
                    out.write(f"\n(an unreadable record under this command's id at offset "
                              f"{message.offset} of {settings.topics.results} is ignored)\n")
                    continue
                last = answer
                out.write("\r" + progress_line(last) + " " * 4)
                out.flush()
                if last.status in FINAL:
                    out.write("\n")
                    return last
        out.write("\n")
        return last
    finally:
        await results.stop()


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in rows)


def print_employees(result: CommandResult) -> None:
    """`employees list` as tables: the links, the CRM managers, the recent fallbacks."""
    mapping = result.data.get("mapping", {})
    roster = result.data.get("roster", {})
    managers = {m["id"]: m for m in roster.get("managers", [])}
    senior = mapping.get("senior_manager_id")
    rows = [["employee", "extension", "CRM user", "name", "note"]]
    for emp, link in sorted(mapping.get("employees", {}).items()):
        user = managers.get(link["crm_user_id"])
        rows.append([emp, link.get("extension") or "-", str(link["crm_user_id"]),
                     user["name"] if user else "?",
                     "" if user or not roster else "no longer an active manager"])
    print(_table(rows))
    print(f"\nsenior manager: {senior if senior else 'none (activation needs one)'}")
    if roster:
        print(f"\nCRM managers (groups {', '.join(roster.get('groups', []))}, synced "
              f"{roster.get('synced_at')}):")
        print(_table([["id", "name", "email", "status"]] + [
            [str(m["id"]), m["name"], m.get("email") or "-", m.get("status") or "-"]
            for m in managers.values()]))
    fallbacks = result.data.get("fallbacks") or {}
    if fallbacks:
        print("\ncalls routed to the senior manager:")
        print(_table([["employee", "why"]] + [[k, v] for k, v in sorted(fallbacks.items())]))


def run(settings: Settings, command: dict[str, Any], *, follow: float = 600.0,
        show: Callable[[CommandResult], None] | None = None) -> int:
    result = asyncio.run(send_and_follow(settings, command, follow=follow))
    if result is None:
        print(f"no answer to {command['command_id']} within {follow:.0f}s: is a worker running?")
        return 2
    if result.data and result.status in FINAL:
        if show is not None and result.status == "done":
            show(result)
        else:
            print(json.dumps(result.data, indent=2, ensure_ascii=False, default=str))
    return 0 if result.status == "done" else 1
