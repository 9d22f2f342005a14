"""A tenant's health (active, broken, portal outage, deactivated) as one typed state machine."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

from pipeline.delivery.errorpolicy import DeadLetter, Reason
from pipeline.delivery.tenantstate import StateStore, TenantState
from pipeline.observability.metrics import TENANT_GAUGES

__all__ = ["Condition", "Health", "Reason", "TenantHealth", "forget_gauges", "publish_gauges"]

# The record's fields this module owns; the rest (replay progress, commands) are others'.
FIELDS = ("state", "reason", "method", "since", "key_fingerprint", "denied_methods", "parked",
          "outage_offsets", "settled_at")
# How it recovered, or why it changed: the record's `reason` while the tenant is active.
PROBED = "the key answered a probe"
PORTAL_BACK = "the portal answers again after an outage"
ACTIVATED = "activated"
NEW_KEY = "a new key or portal"
BY_OPERATOR = "deactivated by an operator"


class Condition(StrEnum):
    ACTIVE = "active"
    BROKEN = "broken"  # the key is refused: asked again once per CALLSYNC_BROKEN_PROBE_SECONDS
    OUTAGE = "outage"  # the portal stopped answering: probed often, what it parked is replayed
    DEACTIVATED = "deactivated"  # by an operator: only an activation ends it

    @property
    def exported(self) -> str:
        """The record's `state` and the gauge's label (the alert rules use these three): an
        outage is "broken" there, told apart by its reason (`RetriesExhausted:<error>`)."""
        return "broken" if self is Condition.OUTAGE else self.value


PROBED_STATES = (Condition.BROKEN.value, Condition.OUTAGE.value)


class Position(Protocol):
    """Where a parked record is on the call topic (a `SourceRef`)."""

    @property
    def partition(self) -> int: ...

    @property
    def offset(self) -> int: ...


@dataclass(frozen=True)
class Health:
    """A tenant's health at one moment, typed, read from its tenant-state record."""

    condition: Condition = Condition.ACTIVE
    cause: Reason | None = None  # why its events are parked (None while active)
    # With a cause: the error retried until the outage (RetriesExhausted:<detail>); without
    # one: how it came back, or the operator's words for a deactivation.
    detail: str = ""
    method: str = ""  # the request that broke it
    since: datetime | None = None
    key_fingerprint: str = ""  # of the key all this is about ("" before any was seen)
    denied: tuple[str, ...] = ()  # methods the key was refused
    parked: int = 0  # dead-lettered since the last settlement
    outage_offsets: Mapping[str, int] = field(default_factory=dict)
    settled_at: datetime | None = None

    @classmethod
    def of(cls, state: TenantState) -> Health:
        """Reads a record as every version of callsync wrote it: state "broken" with a reason
        `RetriesExhausted:<error>` is an outage, any other "broken" a refused key."""
        cause: Reason | None = None
        detail = state.reason
        condition = Condition(state.state)
        if condition is Condition.DEACTIVATED:
            cause = Reason.DEACTIVATED
        elif condition is Condition.BROKEN:
            cause = Reason.of(state.reason)
            if cause is not None:
                detail = state.reason.partition(":")[2]
            if cause is Reason.RETRIES_EXHAUSTED:
                condition = Condition.OUTAGE
        return cls(condition=condition, cause=cause, detail=detail, method=state.method,
                   since=state.since, key_fingerprint=state.key_fingerprint,
                   denied=tuple(state.denied_methods), parked=state.parked,
                   outage_offsets=dict(state.outage_offsets), settled_at=state.settled_at)

    @property
    def reason(self) -> str:
        """The record's `reason`, as earlier versions wrote it (`Health.of` reads it back)."""
        if self.cause is None or self.condition is Condition.DEACTIVATED:
            return self.detail
        return f"{self.cause}:{self.detail}" if self.detail else str(self.cause)

    def record(self) -> dict[str, Any]:
        """The record's fields this module owns, in the format earlier versions read."""
        return {"state": self.condition.exported, "reason": self.reason, "method": self.method,
                "since": self.since, "key_fingerprint": self.key_fingerprint,
                "denied_methods": list(self.denied), "parked": self.parked,
                "outage_offsets": dict(self.outage_offsets), "settled_at": self.settled_at}

    @property
    def stopped(self) -> bool:
        """Not active: every event of the tenant is parked without asking the CRM."""
        return self.condition is not Condition.ACTIVE

    @property
    def probed(self) -> bool:
        """Broken or down: the lane asks `/api/credentials` until it answers."""
        return self.condition in (Condition.BROKEN, Condition.OUTAGE)

    def dead_letter(self) -> DeadLetter | None:
        """What each event is parked with while the tenant is stopped (None while active)."""
        if self.condition is Condition.ACTIVE:
            return None
        if self.condition is Condition.DEACTIVATED:
            return DeadLetter(reason=Reason.DEACTIVATED, broken=True)
        return DeadLetter(reason=self.reason, broken=True, method=self.method)


class TenantHealth:
    """The one owner of a tenant's health. It keeps no copy: every read is of the tenant-state
    record (a new lane, a restarted worker, the desk and the replay all see the same), and
    every transition is one write of that record and of the state gauges.

        ACTIVE ── broke(action) ──► BROKEN (a refused key) or OUTAGE (a portal that is down)
        BROKEN, OUTAGE ── recovered() ──► ACTIVE  (a probe answered)
        BROKEN, OUTAGE ── new_key(fingerprint) ──► ACTIVE  (DEACTIVATED stays DEACTIVATED)
        any ── deactivated(why) ──► DEACTIVATED
        any ── activated(fingerprint) ──► ACTIVE, nothing denied

    Any other transition is a no-op by rule and returns False (they are races between a lane,
    its probe and the desk, not bugs): `broke` while not active (the first cause stands, and
    a deactivated tenant does not break because a request failed) or with a deactivation's
    dead letter (only `deactivated` deactivates); `recovered` while active or deactivated (a
    probe never re-activates). Refused with ValueError, a bug: `broke` with an action that
    does not break a tenant. In any condition: `denied`, `parked`, `settled` and
    `outage_replay_started`; a new key (`new_key`, `uses_key`) forgets the denied methods.
    """

    def __init__(self, states: StateStore, tenant_id: str, *,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.states = states
        self.tenant_id = tenant_id
        self.clock = clock

    @property
    def now(self) -> Health:
        stored = self.states.stored(self.tenant_id)
        if not stored:
            return Health()
        return Health.of(TenantState.model_validate(
            {k: stored[k] for k in FIELDS if k in stored}))

    # Hot paths (every event, every request): one field of the record, not all of it.
    @property
    def stopped(self) -> bool:
        stored = self.states.stored(self.tenant_id)
        return stored is not None and stored.get("state", "active") != "active"

    @property
    def probed(self) -> bool:  # broken or down: the lane probes it by itself
        stored = self.states.stored(self.tenant_id)
        return stored is not None and stored.get("state") in PROBED_STATES

    def is_denied(self, method: str) -> bool:
        stored = self.states.stored(self.tenant_id)
        return stored is not None and method in stored.get("denied_methods", ())

    def dead_letter(self) -> DeadLetter | None:
        return self.now.dead_letter() if self.stopped else None

    # -- transitions ---------------------------------------------------------------------------

    def broke(self, action: DeadLetter) -> bool:
        """A request found the key refused, or the portal down (`action.outage`)."""
        if not action.broken:
            raise ValueError(f"{action.reason} does not break a tenant")
        health = self.now
        if health.condition is not Condition.ACTIVE or action.cause is Reason.DEACTIVATED:
            return False
        condition = Condition.OUTAGE if action.outage else Condition.BROKEN
        return self._save(replace(health, condition=condition, cause=action.cause,
                                  detail=_detail(action), method=action.method,
                                  since=self.clock()))

    def recovered(self) -> bool:
        """A probe answered: the key works again, or the portal is back."""
        health = self.now
        if not health.probed:
            return False
        why = PORTAL_BACK if health.condition is Condition.OUTAGE else PROBED
        return self._save(_active(health, why, self.clock()))

    def deactivated(self, why: str = "") -> bool:
        """An operator switched the tenant off: its events are parked until an activation."""
        return self._save(replace(self.now, condition=Condition.DEACTIVATED,
                                  cause=Reason.DEACTIVATED, detail=why or BY_OPERATOR,
                                  method="", since=self.clock()))

    def activated(self, fingerprint: str) -> bool:
        """An operator's activation (its key was checked): active, with nothing denied."""
        return self._save(replace(_active(self.now, ACTIVATED, self.clock()),
                                  key_fingerprint=fingerprint, denied=()))

    def new_key(self, fingerprint: str) -> bool:
        """The integration changed its key or portal: what the old one was refused no longer
        holds (a deactivation does)."""
        health = self.now
        if health.probed:
            health = _active(health, NEW_KEY, self.clock())
        return self._save(replace(health, key_fingerprint=fingerprint, denied=()))

    def uses_key(self, fingerprint: str) -> bool:
        """A lane starts with this key (a restart, a new lane): a broken key stays broken and
        denied methods stay denied; a record of another key's is forgotten (`new_key`)."""
        known = self.now.key_fingerprint
        if known == fingerprint:
            return False
        if known:
            return self.new_key(fingerprint)
        return self._save(replace(self.now, key_fingerprint=fingerprint))

    def denied(self, method: str) -> bool:
        """The key was refused `method`: it is not asked again until the key changes."""
        health = self.now
        if method in health.denied:
            return False
        return self._save(replace(health, denied=(*health.denied, method)))

    def parked(self, source: Position, *, outage: bool) -> bool:
        """An event went to the dead-letter topic; in an outage, where its replay starts."""
        health = self.now
        offsets = dict(health.outage_offsets)
        if outage:
            partition = str(source.partition)
            offsets[partition] = min(source.offset, offsets.get(partition, source.offset))
        return self._save(replace(health, parked=health.parked + 1, outage_offsets=offsets))

    def settled(self) -> bool:
        """A replay delivered what was parked up to its start."""
        return self._save(replace(self.now, parked=0, settled_at=self.clock()))

    def outage_replay_started(self) -> bool:
        """The replay of what the outage parked took over its start offsets."""
        return self._save(replace(self.now, outage_offsets={}))

    def _save(self, health: Health) -> bool:
        if health == self.now:
            return False
        record = self.states.get(self.tenant_id).model_copy(update=health.record())
        self.states.put(self.tenant_id, record)
        show_gauges(self.tenant_id, health)
        return True


def _active(health: Health, why: str, now: datetime) -> Health:
    return replace(health, condition=Condition.ACTIVE, cause=None, detail=why, method="",
                   since=now)


def _detail(action: DeadLetter) -> str:
    """What the record keeps after the cause: the error of an outage, or an unknown reason."""
    return action.reason.partition(":")[2] if action.cause is not None else action.reason


def show_gauges(tenant_id: str, health: Health) -> None:
    """The state gauges, from the health: the one place they are set."""
    TENANT_GAUGES.show(tenant_id, health.condition.exported, health.parked)


def publish_gauges(states: StateStore, owned: Callable[[str], bool]) -> int:
    """Set the state gauges of every tenant this worker owns from the table (after a start or
    a failover they exist before the tenant's next event) and drop the others'."""
    shown = 0
    for tenant_id in states.tenants():
        if "|" in tenant_id or states.stored(tenant_id) is None:
            continue
        if owned(tenant_id):
            show_gauges(tenant_id, TenantHealth(states, tenant_id).now)
            shown += 1
        else:
            forget_gauges(tenant_id)
    return shown


def forget_gauges(tenant_id: str) -> None:
    TENANT_GAUGES.forget(tenant_id)
