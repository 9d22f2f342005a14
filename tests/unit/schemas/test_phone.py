"""Phone numbers: E.164 for callers, and the tenant's own numbers as they are matched."""

from __future__ import annotations

import pytest
from pydantic import TypeAdapter, ValidationError

from schemas.phone import E164, PHONE_MAX_LENGTH, matches_any, own_number_form, to_e164


@pytest.mark.parametrize(("raw", "kept"), [
    ("+380 44 333 44 00", "+380443334400"),
    ("380443334400", "+380443334400"),  # bare digits: international, as for callers
    ("044 333 44 00", "0443334400"),  # a national form keeps its digits
    ("(044) 333-44-00", "0443334400"),
    ("044.333.44.00", "0443334400"),
])
def test_an_own_number_is_kept_as_e164_or_as_national_digits(raw: str, kept: str) -> None:
    assert own_number_form(raw) == kept


@pytest.mark.parametrize("raw", ["101", "0123", "+1", "07", "not a number"])
def test_what_cannot_be_a_callers_number_is_refused(raw: str) -> None:
    with pytest.raises(ValueError, match="phone number"):
        own_number_form(raw)


def test_a_national_form_matches_in_the_callers_own_country_only() -> None:
    assert matches_any("+380443334400", ["0443334400"])
    assert not matches_any("+380443334401", ["0443334400"])
    assert not matches_any("+48443334400", ["0443334400"])  # Poland has no trunk prefix 0


def test_e164_forms_match_exactly() -> None:
    assert matches_any("+380443334400", ["+12125550123", "+380443334400"])
    assert not matches_any("+380443334400", ["+380443334401"])
    assert not matches_any("+380443334400", [])


def test_a_callers_number_padded_past_its_length_is_refused_before_it_is_read() -> None:
    """Its digits alone would make a valid number; read, the padding would be kept (the parse
    keeps the last numbers it was given)."""
    padded = "380501112233" + "x" * 100_000 + "\N{GRINNING FACE}"
    assert to_e164.__wrapped__(padded) == "+380501112233"  # what the length check stops
    with pytest.raises(ValidationError, match=f"at most {PHONE_MAX_LENGTH} characters"):
        TypeAdapter(E164).validate_python(padded)
    assert TypeAdapter(E164).validate_python("+38 (050) 111-22-33") == "+380501112233"
