"""What the console knows, folded from the records it reads: tenants, states, letters, results."""

from __future__ import annotations

import json
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import ValidationError

from pipeline.signing import RecordRefused, open_record
from schemas.control import CommandResult

__all__ = ["CONFIG_FIELDS", "Letter", "Overview", "TenantView", "shown_state"]

# The only integration fields the console keeps: a tenant key (clear or encrypted) is dropped
# the moment a record is parsed, so no page, log or crash dump can show it.
CONFIG_FIELDS = ("tenant_id", "portal_url", "admin_email", "site_code", "timezone",
                 "module_code", "options")
LETTERS_KEPT = 1000  # per tenant and kind: a page shows the newest
RESULTS_KEPT = 5000  # commands whose answers are kept
LetterKind = Literal["dead", "invalid"]
NO_TENANT = ""


def _text(value: bytes | None) -> str | None:
    if value is None:
        return None
    try:
        decoded = json.loads(value)
    except ValueError:
        return value.decode(errors="replace")
    return decoded if isinstance(decoded, str) else value.decode(errors="replace")


def _time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def shown_state(state: dict[str, Any] | None) -> str:
    """active, broken, outage (broken because the portal stopped answering) or deactivated."""
    if not state:
        return "active"
    name = str(state.get("state", "active"))
    if name == "broken" and (state.get("outage_offsets")
                             or str(state.get("reason", "")).startswith("RetriesExhausted")):
        return "outage"
    return name


@dataclass(frozen=True)
class Letter:
    """One record of the dead-letter or invalid topic, as its headers describe it."""

    kind: LetterKind
    tenant_id: str | None
    call_id: str | None
    reason: str
    methods: str
    broken: bool
    source: str
    at: datetime | None
    position: str


@dataclass
class TenantView:
    tenant_id: str
    config: dict[str, Any] | None = None
    state: dict[str, Any] | None = None
    dead: int = 0
    invalid: int = 0
    last_delivery: datetime | None = None
    status: CommandResult | None = None

    @property
    def shown(self) -> str:
        """As shown_state; "not set up" for a tenant nothing is known of yet."""
        if self.config is None and self.state is None and not (
                self.status and self.status.data.get("config")):
            return "not set up"
        return shown_state(self.state)

    @property
    def parked(self) -> int:
        return int((self.state or {}).get("parked", 0))

    @property
    def fallbacks(self) -> dict[str, str]:
        return dict(self.status.data.get("fallbacks") or {}) if self.status else {}

    @property
    def replay(self) -> dict[str, Any] | None:
        replay = (self.state or {}).get("replay")
        return replay if isinstance(replay, dict) else None

    def matches(self, search: str) -> bool:
        config = self.config or {}
        text = " ".join([self.tenant_id, str(config.get("portal_url", "")),
                         str(config.get("admin_email", "")), str(config.get("site_code", "")),
                         str((self.state or {}).get("reason", ""))]).lower()
        return all(word in text for word in search.lower().split())


@dataclass
class Overview:
    record_key: bytes | None = None  # pipeline.signing.record_key of the operator key
    refused_configs: int = 0
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)
    states: dict[str, dict[str, Any]] = field(default_factory=dict)
    letters: dict[tuple[LetterKind, str], deque[Letter]] = field(default_factory=dict)
    counts: Counter[tuple[LetterKind, str]] = field(default_factory=Counter)
    last_delivery: dict[str, datetime] = field(default_factory=dict)
    results: OrderedDict[str, list[CommandResult]] = field(default_factory=OrderedDict)
    latest: dict[tuple[str, str], CommandResult] = field(default_factory=dict)

    def apply_config(self, key: bytes | None, value: bytes | None) -> None:
        """A record of the integrations topic: shown only if the workers would take it (signed
        by the control desk, when the console has the key to check)."""
        tenant = _text(key)
        if not tenant:
            return
        if not value:
            self.configs.pop(tenant, None)  # a tombstone: the tenant was removed
            return
        try:
            sealed = json.loads(value)
            data = open_record(sealed, kind="integration", key=self.record_key).record \
                if self.record_key is not None else sealed.get("body", {}).get("record")
        except (ValueError, AttributeError, RecordRefused):
            self.refused_configs += 1
            return
        if isinstance(data, dict) and data.get("tenant_id") == tenant:
            self.configs[tenant] = {k: data[k] for k in CONFIG_FIELDS if k in data}

    def apply_state(self, key: bytes | None, value: bytes | None) -> None:
        """A record of the worker's tenant-state table changelog (JSON key and value)."""
        tenant = _text(key)
        if not tenant or "|" in tenant:
            return
        if not value:
            self.states.pop(tenant, None)
            return
        try:
            data = json.loads(value)
        except ValueError:
            return
        if isinstance(data, dict):
            data.pop("commands", None)  # results are read from the results topic
            self.states[tenant] = data

    def apply_ledger(self, key: bytes | None, value: bytes | None, timestamp_ms: int) -> None:
        """The delivery ledger's changelog: a call's `call` fact is its upload to the CRM."""
        name = _text(key)
        if not name or "|" not in name or not value or b'"call"' not in value:
            return
        try:
            facts = json.loads(value)
        except ValueError:
            return
        if isinstance(facts, dict) and facts.get("call") is True:
            tenant = name.split("|", 1)[0]
            at = datetime.fromtimestamp(timestamp_ms / 1000, UTC)
            if tenant not in self.last_delivery or self.last_delivery[tenant] < at:
                self.last_delivery[tenant] = at

    def apply_letter(self, kind: LetterKind, headers: list[tuple[str, bytes]], *,
                     topic: str, partition: int, offset: int) -> Letter:
        h = {k: v.decode(errors="replace") for k, v in headers}
        source = (f"{h.get('callsync-source-topic', '?')}"
                  f"[{h.get('callsync-source-partition', '?')}]"
                  f"@{h.get('callsync-source-offset', '?')}")
        letter = Letter(kind=kind, tenant_id=h.get("callsync-tenant") or None,
                        call_id=h.get("callsync-call-id") or None,
                        reason=h.get("callsync-reason", ""), methods=h.get("callsync-methods", ""),
                        broken=h.get("callsync-broken") == "1", source=source,
                        at=_time(h.get("callsync-time")), position=f"{topic}[{partition}]@{offset}")
        slot = (kind, letter.tenant_id or NO_TENANT)
        self.letters.setdefault(slot, deque(maxlen=LETTERS_KEPT)).append(letter)
        self.counts[slot] += 1
        return letter

    def apply_result(self, value: bytes | None) -> CommandResult | None:
        try:
            result = CommandResult.model_validate_json(value or b"")
        except ValidationError:
            return None
        answers = self.results.setdefault(result.command_id, [])
        answers.append(result)
        self.results.move_to_end(result.command_id)
        while len(self.results) > RESULTS_KEPT:
            self.results.popitem(last=False)
        if result.tenant_id and result.type in ("status", "employees") \
                and result.status == "done":
            self.latest[(result.tenant_id, result.type)] = result
        return result

    # -- reading --------------------------------------------------------------------------------

    def answer(self, command_id: str) -> CommandResult | None:
        """The latest answer to a command (a final one once it came)."""
        answers = self.results.get(command_id)
        return answers[-1] if answers else None

    def tenant(self, tenant_id: str) -> TenantView:
        return TenantView(
            tenant_id=tenant_id, config=self.configs.get(tenant_id),
            state=self.states.get(tenant_id), dead=self.counts[("dead", tenant_id)],
            invalid=self.counts[("invalid", tenant_id)],
            last_delivery=self.last_delivery.get(tenant_id),
            status=self.latest.get((tenant_id, "status")))

    def tenant_ids(self) -> list[str]:
        known = set(self.configs) | set(self.states)
        known |= {tenant for (tenant, kind), result in self.latest.items()
                  if kind == "status" and result.data.get("config")}
        return sorted(known)

    def tenants(self, *, state: str = "", search: str = "") -> list[TenantView]:
        views = [self.tenant(t) for t in self.tenant_ids()]
        return [v for v in views if (not state or v.shown == state)
                and (not search or v.matches(search))]

    def letters_of(self, kind: LetterKind, tenant_id: str | None) -> list[Letter]:
        """Newest first; tenant None: the records no tenant could be told for."""
        return list(reversed(self.letters.get((kind, tenant_id or NO_TENANT), ())))

    def unattributed(self) -> int:
        return self.counts[("invalid", NO_TENANT)] + self.counts[("dead", NO_TENANT)]
