"""The error policy: each failure of a retailCRM call maps to one action."""

from __future__ import annotations

import random

import pytest

from pipeline.crm import errors as e
from pipeline.delivery.errorpolicy import DeadLetter, Reject, Retry, backoff_delay, decide


def act(exc: Exception, attempt: int = 1) -> object:
    return decide(exc, attempt=attempt, max_attempts=3, base=0.1, cap=1.0,
                  rand=random.Random(1))


@pytest.mark.parametrize("exc", [
    e.InvalidApiKey("x", method="/api/users"), e.MissingApiKey("x"), e.AccountNotFound("x")])
def test_a_dead_key_breaks_the_integration(exc: Exception) -> None:
    action = act(exc)
    assert isinstance(action, DeadLetter) and action.broken
    assert action.reason == type(exc).__name__


def test_access_denied_parks_only_that_method() -> None:
    action = act(e.AccessDenied("x", method="/api/tasks/create"))
    assert action == DeadLetter(reason="AccessDenied", broken=False, method="/api/tasks/create")


def test_telephony_disabled_is_parked_not_rejected() -> None:
    assert act(e.TelephonyDisabled("x")) == DeadLetter(reason="TelephonyDisabled", broken=False)


@pytest.mark.parametrize("exc", [e.RateLimited("x", status=503), e.CRMServerError("x"),
                                 e.CRMTransportError("x")])
def test_transient_failures_retry_then_park(exc: Exception) -> None:
    assert isinstance(act(exc, 1), Retry) and isinstance(act(exc, 2), Retry)
    exhausted = act(exc, 3)
    assert isinstance(exhausted, DeadLetter) and not exhausted.broken
    assert exhausted.reason.startswith("RetriesExhausted:")
    # Only the delivery step, having asked the portal, may call it an outage.
    assert not exhausted.outage


def test_an_outage_is_a_broken_exhausted_retry_and_nothing_else() -> None:
    assert DeadLetter(reason="RetriesExhausted:CRMServerError", broken=True).outage
    assert not DeadLetter(reason="InvalidApiKey", broken=True).outage
    assert not DeadLetter(reason="upload:RetriesExhausted:CRMServerError", broken=False).outage


@pytest.mark.parametrize("exc", [e.ValidationFailed("bad phone"), e.NotFound("x"),
                                 e.MissingParameter("x")])
def test_rejected_data_goes_to_the_invalid_topic(exc: Exception) -> None:
    action = act(exc)
    assert isinstance(action, Reject) and str(exc) in action.reason


def test_anything_else_is_raised() -> None:
    with pytest.raises(ZeroDivisionError):
        act(ZeroDivisionError())


def test_backoff_is_jittered_above_its_step_and_capped() -> None:
    """retailCRM: after a 503, back off exponentially from 100 ms or more."""
    rand = random.Random(7)
    for attempt in range(1, 20):
        step = min(2.0, 0.1 * 2 ** (attempt - 1))
        for _ in range(50):
            delay = backoff_delay(attempt, base=0.1, cap=2.0, rand=rand)
            assert step <= delay <= min(2.0, 2 * step)
    firsts = [backoff_delay(1, base=0.1, cap=2.0, rand=rand) for _ in range(1000)]
    assert min(firsts) >= 0.1 and max(firsts) > 0.15
    assert len({backoff_delay(3, base=0.1, cap=2.0, rand=rand) for _ in range(10)}) > 1
