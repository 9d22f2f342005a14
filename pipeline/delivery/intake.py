"""A call record's way in: validate, find the tenant, plan, hand to the tenant's lane."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Container, Mapping
from typing import Any

from pydantic import ValidationError

from pipeline.delivery.diagnosis import unmapped_extension
from pipeline.delivery.employees import Roster, effective_mapping
from pipeline.delivery.lanes import LaneRegistry
from pipeline.delivery.outlets import Outlets
from pipeline.delivery.planning import plan_call
from pipeline.delivery.work import SourceRef, Work
from pipeline.observability.logs import redactor
from pipeline.observability.metrics import FALLBACKS
from pipeline.secrets import KeyRing, SecretError
from pipeline.signing import RecordRefused, open_record
from pipeline.streams.offsets import Lease
from pipeline.streams.tables import version_reader
from schemas.call_event import CallEvent
from schemas.integration import IntegrationConfig
from schemas.mapping import EmployeeMapping, Routes, Routing

__all__ = ["MAX_CALL_RECORD_BYTES", "TenantDirectory", "accept_call", "admit",
           "describe_invalid", "divert"]

log = logging.getLogger(__name__)
# Every field of a call event is bounded (a recording URL 2,083 characters, UTM fields 255, ids
# 128): the largest, its text escaped as \uXXXX, is some 30 KB. A larger record is padding, and
# a lane keeps each waiting event's bytes (up to 2,000 a tenant).
MAX_CALL_RECORD_BYTES = 65_536


def describe_invalid(exc: ValidationError) -> str:
    """`undecodable: …` for bytes that are not JSON, else `schema: field: problem; …`."""
    errors = exc.errors(include_url=False, include_input=False)
    if any(err["type"] in ("json_invalid", "json_type") for err in errors):
        return "undecodable: " + "; ".join(str(err["msg"]) for err in errors)[:500]
    parts = [f"{'.'.join(str(p) for p in err['loc']) or '(record)'}: {err['msg']}"
             for err in errors]
    return "schema: " + "; ".join(parts)[:1000]


class TenantDirectory:
    """Parsed views of the integrations, mappings and rosters tables, re-parsed on change.
    Stored configs and mappings are signed records; a config's key is decrypted here, in the
    memory of the worker that owns the tenant, and nowhere else. The tables hold every
    tenant's records as bytes; only tenants in use are parsed, and a tenant nobody asked
    about for a while is let go again (`evict_idle`)."""

    def __init__(self, integrations: Mapping[str, Any], mappings: Mapping[str, Any],
                 rosters: Mapping[str, Any] | None = None, *, keyring: KeyRing | None = None,
                 record_key: bytes | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._integrations = integrations
        self._mappings = mappings
        self._rosters = rosters if rosters is not None else {}
        # A cached view remembers the version of the stored record it was parsed from.
        self._config_version = version_reader(integrations)
        self._mapping_version = version_reader(mappings)
        self._roster_version = version_reader(self._rosters)
        self.keyring = keyring
        self.record_key = record_key
        self.clock = clock
        self._configs: dict[str, tuple[Any, IntegrationConfig | None]] = {}
        self._stored_maps: dict[str, tuple[Any, EmployeeMapping]] = {}
        self._maps: dict[str, tuple[Any, Any, Routing, dict[str, str]]] = {}
        self._roster_cache: dict[str, tuple[Any, Roster]] = {}
        self._used: dict[str, float] = {}  # tenant -> when a parsed view of it was last kept
        self.fallbacks: dict[str, dict[str, str]] = {}  # tenant -> employee -> why

    def open_config(self, stored: object) -> IntegrationConfig:
        """A stored (or published) config record: verified, its key decrypted. Raises
        RecordRefused, SecretError or ValidationError, none of which carries the key."""
        body = open_record(stored, kind="integration", key=self.record_key)
        if self.keyring is None:
            raise SecretError("CALLSYNC_SECRETS__KEYS is not set on this worker")
        return IntegrationConfig.from_stored(body.record, self.keyring)

    def open_mapping(self, stored: object) -> EmployeeMapping:
        body = open_record(stored, kind="mapping", key=self.record_key)
        return EmployeeMapping.model_validate(body.record)

    def config(self, tenant_id: str, *, keep: bool = True) -> IntegrationConfig | None:
        """The tenant's config, its key decrypted. `keep=False` is for sweeps over every
        tenant (the roster sync): a config not already held is opened for that use only."""
        version = self._config_version(tenant_id)
        cached = self._configs.get(tenant_id)
        if version is not None and cached is not None and cached[0] == version:
            if keep:
                self._used[tenant_id] = self.clock()
            return cached[1]
        stored = self._integrations.get(tenant_id)
        if not stored:
            return None
        try:
            config: IntegrationConfig | None = self.open_config(stored)
        except (RecordRefused, SecretError, ValidationError, ValueError) as exc:
            log.error("the stored integration of %s cannot be used: %s", tenant_id,
                      self._why(exc))
            config = None
        if config is not None:
            redactor.register(config.api_key.get_secret_value())
        if keep or config is None:  # a refusal is kept either way: it is logged once
            self._configs[tenant_id] = (version, config)
            self._used[tenant_id] = self.clock()
        return config

    @staticmethod
    def _why(exc: Exception) -> str:  # never an input value: the key may be one
        return describe_invalid(exc) if isinstance(exc, ValidationError) else \
            f"{type(exc).__name__}: {exc}"

    def configured(self) -> list[str]:
        return [str(k) for k in list(self._integrations.keys())]

    def stored_mapping(self, tenant_id: str) -> EmployeeMapping:
        """The mapping as the operators set it."""
        version = self._mapping_version(tenant_id)
        cached = self._stored_maps.get(tenant_id)
        if version is not None and cached is not None and cached[0] == version:
            self._used[tenant_id] = self.clock()
            return cached[1]
        stored = self._mappings.get(tenant_id)  # inflated only when it changed
        if not stored:
            return EmployeeMapping(tenant_id=tenant_id)
        self._used[tenant_id] = self.clock()
        mapping = self._open_stored_mapping(tenant_id, stored)
        self._stored_maps[tenant_id] = (version, mapping)
        return mapping

    def _open_stored_mapping(self, tenant_id: str, stored: object) -> EmployeeMapping:
        try:
            return self.open_mapping(stored)
        except (RecordRefused, ValidationError) as exc:
            log.error("the stored mapping of %s cannot be used: %s", tenant_id, self._why(exc))
            return EmployeeMapping(tenant_id=tenant_id)

    def roster(self, tenant_id: str) -> Roster | None:
        version = self._roster_version(tenant_id)
        cached = self._roster_cache.get(tenant_id)
        if version is not None and cached is not None and cached[0] == version:
            self._used[tenant_id] = self.clock()
            return cached[1]
        stored = self._rosters.get(tenant_id)
        if not stored:
            return None
        self._used[tenant_id] = self.clock()
        roster = Roster.model_validate_json(stored) if isinstance(stored, bytes | str) \
            else Roster.model_validate(stored)
        self._roster_cache[tenant_id] = (version, roster)
        return roster

    def mapping(self, tenant_id: str) -> Routing:
        """The mapping calls use: links to users who left the managers drop out. Kept as a
        Routing (the operators' model is parsed for it and let go)."""
        versions = self._mapping_version(tenant_id), self._roster_version(tenant_id)
        self._used[tenant_id] = self.clock()
        cached = self._maps.get(tenant_id)
        if cached is None or cached[:2] != versions:
            stored = self._mappings.get(tenant_id)
            operators = self._open_stored_mapping(tenant_id, stored) if stored else \
                EmployeeMapping(tenant_id=tenant_id)
            effective, dropped = effective_mapping(operators, self.roster(tenant_id))
            cached = (*versions, effective.routing(), dropped)
            self._maps[tenant_id] = cached
        return cached[2]

    def held(self) -> int:
        """How many tenants have parsed views here."""
        return len(self._used)

    def evict_idle(self, after: float, *, keep: Container[str] = ()) -> int:
        """Let go of the parsed config (its decrypted key too) and mappings of tenants nobody
        asked about for `after` seconds, but those in `keep` (tenants with a lane); the next
        call parses them again from the tables. Returns how many were let go."""
        now = self.clock()
        idle = [tenant_id for tenant_id, used in self._used.items()
                if now - used > after and tenant_id not in keep]
        for tenant_id in idle:
            del self._used[tenant_id]
            for cache in (self._configs, self._stored_maps, self._maps, self._roster_cache):
                cache.pop(tenant_id, None)
        return len(idle)

    def note_fallback(self, event: CallEvent, mapping: Routes) -> str | None:
        """Count a call whose employee is not (or no longer) linked to an active manager;
        returns why it is not, None for a linked employee or none at all."""
        employee = event.employee
        if employee is None or employee.id in mapping.employees:
            return None
        dropped = self._maps.get(event.tenant_id, (None, None, None, {}))[3]
        why = dropped.get(employee.id, "not linked to a CRM manager")
        seen = self.fallbacks.setdefault(event.tenant_id, {})
        if len(seen) < 1000:
            seen[employee.id] = why
        FALLBACKS.labels(event.tenant_id, "inactive" if employee.id in dropped else
                         "unmapped").inc()
        return why


async def accept_call(*, raw: bytes | None, key: bytes | None, source: SourceRef,
                      ack: Callable[[], object], directory: TenantDirectory,
                      lanes: LaneRegistry, outlets: Outlets, lease: Lease | None = None) -> None:
    """Never raises for bad input: it lands on the invalid topic and the partition moves on."""
    if not raw:
        await outlets.invalid(raw=raw, key=key, source=source, tenant_id=None,
                              reason="undecodable: the record has no value")
        ack()
        return
    if len(raw) > MAX_CALL_RECORD_BYTES:
        await outlets.invalid(raw=raw, key=key, source=source, tenant_id=None,
                              reason=f"too_large: the record is {len(raw)} bytes; a call event "
                                     f"is at most {MAX_CALL_RECORD_BYTES}")
        ack()
        return
    try:
        event = CallEvent.model_validate_json(raw)
    except ValidationError as exc:
        await outlets.invalid(raw=raw, key=key, source=source, reason=describe_invalid(exc),
                              tenant_id=None)
        ack()
        return
    reason = None
    config = directory.config(event.tenant_id)
    if key is None:
        reason = f"key_mismatch: the record has no key; it must be tenant_id {event.tenant_id!r}"
    elif key != event.tenant_id.encode():
        # Not quoted: a producer that keys by the caller's number would put it in the reason,
        # and so in the log (the copy keeps the key as it came).
        reason = (f"key_mismatch: the record key ({len(key)} bytes) is not tenant_id "
                  f"{event.tenant_id!r}")
    elif config is None:
        reason = f"unknown_tenant: no integration is configured for {event.tenant_id!r}"
    if reason is not None or config is None:
        await outlets.invalid(raw=raw, key=key, source=source, reason=reason or "",
                              tenant_id=event.tenant_id)
        ack()
        return
    work = admit(event, config=config, mapping=directory.mapping(event.tenant_id),
                 directory=directory, lanes=lanes, raw=raw, key=key, source=source, ack=ack,
                 lease=lease)
    if work is None:
        ack()
        return
    await lanes.lane_for(config).submit(work)


def admit(event: CallEvent, *, config: IntegrationConfig, mapping: Routes,
          directory: TenantDirectory, lanes: LaneRegistry, raw: bytes, key: bytes | None,
          source: SourceRef, ack: Callable[[], object], lease: Lease | None = None,
          replayed: bool = False) -> Work | None:
    """The one way in for a valid call event, live or replayed: its plan, its lane's
    diagnosis told the mapping (the senior manager) and an unmapped extension, and its work —
    None when the call needs nothing in the CRM."""
    unlinked = directory.note_fallback(event, mapping)
    plan = plan_call(event, config, mapping)
    if plan.is_empty:
        return None
    lane = lanes.lane_for(config)
    lane.diagnosis.configure(config, mapping.senior_manager_id)
    if unlinked is not None and event.employee is not None:
        lane.diagnosis.report(unmapped_extension(event.employee.id, event.employee.extension,
                                                 unlinked))
    return Work(event=event, plan=plan, raw=raw, key=key, source=source, ack=ack, lease=lease,
                replayed=replayed)


async def divert(outlets: Outlets, *, raw: bytes | None, key: bytes | None, source: SourceRef,
                 reason: str, tenant_id: str | None, ack: Callable[[], object] | None = None,
                 first_delay: float = 0.5, max_delay: float = 30.0) -> None:
    """Put a record on the invalid topic, trying until the copy is stored, then settle it.
    For what an agent could not handle: the record never vanishes and the agent goes on."""
    delay = first_delay
    while True:
        try:
            await outlets.invalid(raw=raw, key=key, source=source, reason=reason,
                                  tenant_id=tenant_id)
            break
        except Exception:
            log.exception("could not put %s on the invalid topic; trying again in %.1f s",
                          source, delay)
            await asyncio.sleep(delay)
            delay = min(max_delay, delay * 2)
    if ack is not None:
        ack()
