"""E.164 phone numbers as a pydantic type, parsed and checked by `phonenumbers`."""

from __future__ import annotations

from typing import Annotated

import phonenumbers
from pydantic import AfterValidator, Field

__all__ = ["E164", "to_e164"]


def to_e164(value: str) -> str:
    """Normalise a number to E.164 or raise ValueError naming what is wrong with it.

    Call-tracking exports often drop the leading '+' of an international number
    ("380501112233"), so a bare run of 10-15 digits is read as international.
    """
    raw = value.strip()
    digits = "".join(ch for ch in raw if ch.isdigit())
    candidate = raw if raw.startswith("+") else f"+{digits}"
    try:
        number = phonenumbers.parse(candidate, None)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"not a phone number: {exc}") from None
    if not phonenumbers.is_valid_number(number):
        raise ValueError("not a valid phone number for any country")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


E164 = Annotated[
    str,
    Field(description="Phone number; normalised to E.164 (+<country><number>)",
          examples=["+380501112233"]),
    AfterValidator(to_e164),
]
