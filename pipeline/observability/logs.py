"""Log lines, plain or JSON, and a filter that keeps every known secret out of them."""

from __future__ import annotations

import base64
import logging
import re
from typing import Any
from urllib.parse import quote, quote_plus

__all__ = ["REDACTED", "SecretRedactor", "logging_config", "redactor"]

REDACTED = "**********"
# E.164 numbers as they appear in text, URLs (%2B) or JSON: the country and operator code and
# the last two digits stay readable, the rest is masked.
PHONE = re.compile(r"(?<![\w%])(\+|%2B)(\d{5})(\d{2,9})(\d{2})(?!\d)")


def mask_phones(text: str) -> str:
    return PHONE.sub(lambda m: m[1] + m[2] + "*" * len(m[3]) + m[4], text)


SHORTEST = 4  # a shorter string is no secret (it would mask half of every line)


def secret_forms(secret: str) -> set[str]:
    """The secret as it may appear in text: raw, URL-encoded, base64 (with and without padding)."""
    raw = secret.encode()
    b64 = base64.b64encode(raw).decode()
    forms = {secret, quote(secret, safe=""), quote_plus(secret), b64, b64.rstrip("="),
             base64.urlsafe_b64encode(raw).decode().rstrip("=")}
    return {form for form in forms if len(form) >= SHORTEST}


class SecretRedactor(logging.Filter):
    """Replaces registered secrets (tenant API keys, the operator key) in any record, in every
    form they may take, and masks phone numbers unless told not to.

    A worker knows every key of the tenants it served (10,000 and more, six forms each): the
    forms are indexed by their first characters, so a line is read once, whatever their number
    (trying each form on each line took 5 ms a line with 10,000 keys; an invalid record's
    warning is a line)."""

    def __init__(self, *, phones: bool = True) -> None:
        super().__init__()
        self._by_start: dict[str, set[str]] = {}  # a form's first SHORTEST characters
        self.mask_phones = phones

    def register(self, secret: str) -> None:
        if len(secret) >= SHORTEST:
            for form in secret_forms(secret):
                self._by_start.setdefault(form[:SHORTEST], set()).add(form)

    def scrub(self, text: str) -> str:
        if self._by_start:
            text = self._without_secrets(text)
        return mask_phones(text) if self.mask_phones else text

    def _without_secrets(self, text: str) -> str:
        """Each place a form starts, the longest form there, from the left."""
        index, parts, at, start = self._by_start, [], 0, 0
        while at <= len(text) - SHORTEST:
            forms = index.get(text[at:at + SHORTEST])
            found = max((f for f in forms if text.startswith(f, at)), key=len, default="") \
                if forms else ""
            if found:
                parts += [text[start:at], REDACTED]
                at = start = at + len(found)
            else:
                at += 1
        return "".join([*parts, text[start:]]) if parts else text

    def filter(self, record: logging.LogRecord) -> bool:
        if self._by_start or self.mask_phones:
            message = record.getMessage()
            scrubbed = self.scrub(message)
            if scrubbed != message:
                record.msg, record.args = scrubbed, None
            if record.exc_info and record.exc_info[1] is not None:
                record.exc_text = self.scrub(logging.Formatter().formatException(
                    record.exc_info))
                record.exc_info = None
        return True


redactor = SecretRedactor()


def logging_config(*, json_lines: bool, level: str = "INFO") -> dict[str, Any]:
    """A dictConfig for the worker: one stdout handler, plain or JSON, always redacting."""
    formatter: dict[str, Any] = (
        {"()": "pythonjsonlogger.json.JsonFormatter",
         "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
         "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"}}
        if json_lines else
        {"format": "[%(asctime)s] %(levelname)s %(name)s: %(message)s"})
    return {
        "version": 1, "disable_existing_loggers": False,
        "filters": {"redact": {"()": "pipeline.observability.logs._the_redactor"}},
        "formatters": {"main": formatter},
        "handlers": {"default": {"class": "logging.StreamHandler", "formatter": "main",
                                 "filters": ["redact"], "stream": "ext://sys.stdout"}},
        "root": {"level": level.upper(), "handlers": ["default"]},
        # httpx logs every request URL at INFO (with the caller's number in lookups); the
        # client's own metrics and errors say what matters.
        "loggers": {"httpx": {"level": "WARNING"}, "httpcore": {"level": "WARNING"}},
    }


def _the_redactor() -> SecretRedactor:
    return redactor
