"""E.164 phone numbers as a pydantic type, parsed and checked by `phonenumbers`."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from typing import Annotated

import phonenumbers
from pydantic import AfterValidator, Field

__all__ = ["E164", "PHONE_MAX_LENGTH", "matches_any", "own_number_form", "to_e164"]

_LAYOUT = re.compile(r"[\s().\-/]")
# A national form: the trunk prefix 0 and the rest of a number, 6-15 digits in all.
_NATIONAL = re.compile(r"^0[0-9]{5,14}$")


@functools.lru_cache(maxsize=1024)
def to_e164(value: str) -> str:
    """Normalise a number to E.164 or raise ValueError naming what is wrong with it.

    Call-tracking exports often drop the leading '+' of an international number
    ("380501112233"), so a bare run of 10-15 digits is read as international.

    `phonenumbers` takes about 0.1 ms a number, and every call event has two, one of them the
    tenant's tracking number, which repeats: the last 1,024 numbers read are kept (about
    200 KB; a refused one is not kept).
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


# Checked before the parse (and its cache, which keeps what it was given): a number padded to
# a megabyte would otherwise be read as its digits, and kept.
PHONE_MAX_LENGTH = 64

E164 = Annotated[
    str,
    Field(description="Phone number; normalised to E.164 (+<country><number>)",
          examples=["+380501112233"], max_length=PHONE_MAX_LENGTH),
    AfterValidator(to_e164),
]


def own_number_form(value: str) -> str:
    """A number of the tenant's own as it is kept and matched: E.164 when it can be read as an
    international number (to_e164's rules), else the digits of a national form starting with
    the trunk prefix 0 ("044 333 44 00" -> "0443334400"), which is read in the caller's own
    country when calls are matched (phonenumbers.is_number_match)."""
    digits = _LAYOUT.sub("", value.strip())
    if _NATIONAL.fullmatch(digits):
        return digits
    return to_e164(value)


def matches_any(e164: str, numbers: Iterable[str]) -> bool:
    """Whether the E.164 number is one of `numbers` (each an own_number_form): E.164 ones
    compared as they are, national ones read in that number's country."""
    national = []
    for number in numbers:
        if number == e164:
            return True
        if not number.startswith("+"):
            national.append(number)
    if not national:
        return False
    parsed = phonenumbers.parse(e164, None)
    match = phonenumbers.MatchType.NSN_MATCH
    return any(phonenumbers.is_number_match(parsed, number) >= match for number in national)
