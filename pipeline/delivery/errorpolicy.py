"""The one error policy: what to do with each failure of a retailCRM call."""

from __future__ import annotations

import random
from dataclasses import dataclass

from pipeline.crm import errors as e

__all__ = ["OUTAGE", "Action", "DeadLetter", "Reject", "Retry", "backoff_delay", "decide"]

# The reason of a step whose retries all failed; with `broken` it means the portal is down.
OUTAGE = "RetriesExhausted"


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
    def outage(self) -> bool:
        """The portal itself stopped answering: its tenant's events are parked until it answers
        a probe again, and then replayed by themselves (no operator needed)."""
        return self.broken and self.reason.startswith(OUTAGE + ":")


@dataclass(frozen=True)
class Reject:
    """The CRM refused this data: the event goes to the invalid-events topic with the reason."""

    reason: str


Action = Retry | DeadLetter | Reject


def backoff_delay(attempt: int, *, base: float, cap: float, rand: random.Random) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(cap, base * 2**(attempt-1))]."""
    return rand.uniform(0, min(cap, base * 2 ** (attempt - 1)))


def decide(exc: Exception, *, attempt: int, max_attempts: int, base: float, cap: float,
           rand: random.Random | None = None) -> Action:
    """Map a failure to an action. Faust's supervisor is never the retry loop."""
    if isinstance(exc, e.InvalidApiKey | e.MissingApiKey | e.AccountNotFound):
        return DeadLetter(reason=type(exc).__name__, broken=True, method=exc.method)
    if isinstance(exc, e.AccessDenied):
        return DeadLetter(reason="AccessDenied", broken=False, method=exc.method)
    if isinstance(exc, e.TelephonyDisabled):
        return DeadLetter(reason="TelephonyDisabled", broken=False, method=exc.method)
    if isinstance(exc, e.CRMAuthorizationError):
        return DeadLetter(reason=type(exc).__name__, broken=True, method=exc.method)
    if isinstance(exc, e.CRMTransportError | e.CRMRetryableError):
        if attempt >= max_attempts:
            return DeadLetter(reason=f"{OUTAGE}:{type(exc).__name__}", broken=False,
                              method=exc.method)
        return Retry(delay=backoff_delay(attempt, base=base, cap=cap,
                                         rand=rand or random.Random()))  # noqa: S311
    if isinstance(exc, e.CRMRejectedError):
        return Reject(reason=str(exc))
    raise exc
