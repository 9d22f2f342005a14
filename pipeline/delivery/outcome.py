"""What a call's steps came to: one value per step, made from the error policy's last word."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.delivery.errorpolicy import DeadLetter, Reject

__all__ = ["DONE", "REVOKED", "Outcome", "broke", "failed", "undeliverable"]


@dataclass(frozen=True)
class Outcome:
    """A step's outcome, or a call's: the outcomes of its steps added up (`+`). `DONE`, the
    empty one, is a step that did all it had to; a call whose outcome is `DONE` is delivered.

    The lane reads a call's outcome in one order (pipeline/delivery/outcomes.py): revoked (it
    stops unsettled), broken (the call is parked with the integration), undeliverable (the
    invalid topic), then its rejected steps (the invalid topic) and parked ones (dead letters)."""

    rejected: tuple[str, ...] = ()
    parked: tuple[DeadLetter, ...] = ()
    broken: DeadLetter | None = None
    undeliverable: str | None = None
    revoked: bool = False

    def __add__(self, other: Outcome) -> Outcome:
        """Both steps' outcomes; the first cause of a break, or of an undeliverable call,
        stands."""
        return Outcome(
            rejected=self.rejected + other.rejected,
            parked=self.parked + other.parked,
            broken=self.broken if self.broken is not None else other.broken,
            undeliverable=(self.undeliverable if self.undeliverable is not None
                           else other.undeliverable),
            revoked=self.revoked or other.revoked)

    @property
    def delivered(self) -> bool:
        """Every step did what it had to."""
        return self == DONE


DONE = Outcome()
REVOKED = Outcome(revoked=True)


def failed(step: str, method: str, action: DeadLetter | Reject) -> Outcome:
    """A step the error policy gave up on: a refused one is rejected, a broken integration
    breaks the call, anything else parks the step (its dead letter names it and the method)."""
    if isinstance(action, Reject):
        return Outcome(rejected=(f"{step}: {action.reason}",))
    if action.broken:
        return broke(action)
    return Outcome(parked=(DeadLetter(reason=f"{step}:{action.reason}", broken=False,
                                      method=action.method or method),))


def broke(action: DeadLetter) -> Outcome:
    """The integration broke (or the portal went down) under the call."""
    return Outcome(broken=action)


def undeliverable(reason: str) -> Outcome:
    """Nothing the CRM can take, for a reason of its own."""
    return Outcome(undeliverable=reason)
