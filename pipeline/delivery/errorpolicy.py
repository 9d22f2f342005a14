"""The one error policy: what to do with each failure of a retailCRM call."""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum

from pipeline.crm import errors as e

__all__ = ["Action", "DeadLetter", "Reason", "Reject", "Retry", "backoff_delay", "decide",
           "key_refused"]


class Reason(StrEnum):
    """Why work is parked, as the dead-letter header and the tenant-state table spell it."""

    INVALID_API_KEY = "InvalidApiKey"
    MISSING_API_KEY = "MissingApiKey"
    ACCOUNT_NOT_FOUND = "AccountNotFound"
    UNAUTHORIZED = "CRMAuthorizationError"  # another refusal of the key
    ACCESS_DENIED = "AccessDenied"  # the key lacks one method
    TELEPHONY_DISABLED = "TelephonyDisabled"
    # A step's retries all failed ("RetriesExhausted:<error>"); with `broken`, the portal is down.
    RETRIES_EXHAUSTED = "RetriesExhausted"
    DEACTIVATED = "Deactivated"  # an operator switched the tenant off

    @classmethod
    def of(cls, text: str) -> Reason | None:
        """The reason a text starts with ("RetriesExhausted:CRMServerError"), if any: a step's
        parked reason ("order:AccessDenied") or an internal one starts with no reason."""
        return cls._value2member_map_.get(text.split(":", 1)[0])  # type: ignore[return-value]


@dataclass(frozen=True)
class Retry:
    delay: float


@dataclass(frozen=True)
class DeadLetter:
    """Park the work on the dead-letter topic; `broken` says the whole integration is down."""

    reason: str
    broken: bool
    method: str = ""

    @property
    def cause(self) -> Reason | None:
        return Reason.of(self.reason)

    @property
    def denied(self) -> bool:
        """The key lacks this one method (`method`): only the steps that need it are parked."""
        return not self.broken and self.cause is Reason.ACCESS_DENIED

    @property
    def exhausted(self) -> bool:
        """The step's retries all failed: the portal is down, or this one request fails."""
        return self.cause is Reason.RETRIES_EXHAUSTED

    @property
    def outage(self) -> bool:
        """The portal itself stopped answering: its tenant's events are parked until it answers
        a probe again, and then replayed by themselves (no operator needed)."""
        return self.broken and self.exhausted


@dataclass(frozen=True)
class Reject:
    """The CRM refused this data: the event goes to the invalid-events topic with the reason."""

    reason: str


Action = Retry | DeadLetter | Reject


def backoff_delay(attempt: int, *, base: float, cap: float, rand: random.Random) -> float:
    """Exponential backoff with jitter above its step: uniform in [step, 2 * step], step =
    base * 2**(attempt-1), both capped. retailCRM asks for a backoff that starts at 100 ms or
    more after a 503 (the default base); full jitter (from 0) retried a fifth of first attempts
    within 20 ms, into the same second that had been refused."""
    step: float = min(cap, base * 2 ** (attempt - 1))
    return min(cap, step + rand.uniform(0, step))


def decide(exc: Exception, *, attempt: int, max_attempts: int, base: float, cap: float,
           rand: random.Random | None = None) -> Action:
    """Map a failure to an action. Faust's supervisor is never the retry loop."""
    if isinstance(exc, e.AccessDenied):
        return DeadLetter(reason=Reason.ACCESS_DENIED, broken=False, method=exc.method)
    if isinstance(exc, e.TelephonyDisabled):
        return DeadLetter(reason=Reason.TELEPHONY_DISABLED, broken=False, method=exc.method)
    if isinstance(exc, e.CRMAuthorizationError):
        return DeadLetter(reason=key_refused(exc), broken=True, method=exc.method)
    if isinstance(exc, e.CRMTransportError | e.CRMRetryableError):
        if attempt >= max_attempts:
            return DeadLetter(reason=f"{Reason.RETRIES_EXHAUSTED}:{type(exc).__name__}",
                              broken=False, method=exc.method)
        return Retry(delay=backoff_delay(attempt, base=base, cap=cap,
                                         rand=rand or random.Random()))  # noqa: S311
    if isinstance(exc, e.CRMRejectedError):
        return Reject(reason=str(exc))
    raise exc


def key_refused(exc: e.CRMAuthorizationError) -> Reason:
    """Why a refused key breaks its tenant: its own kind, else a refusal of the key at all."""
    return Reason.of(type(exc).__name__) or Reason.UNAUTHORIZED
