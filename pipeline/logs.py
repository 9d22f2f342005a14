"""Log lines, plain or JSON, and a filter that keeps every known secret out of them."""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["REDACTED", "SecretRedactor", "logging_config", "redactor"]

REDACTED = "**********"


class SecretRedactor(logging.Filter):
    """Replaces registered secrets (tenant API keys, the operator key) in any record."""

    def __init__(self) -> None:
        super().__init__()
        self._secrets: set[str] = set()

    def register(self, secret: str) -> None:
        if len(secret) >= 4:
            self._secrets.add(secret)

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if self._secrets:
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
        "filters": {"redact": {"()": "pipeline.logs._the_redactor"}},
        "formatters": {"main": formatter},
        "handlers": {"default": {"class": "logging.StreamHandler", "formatter": "main",
                                 "filters": ["redact"], "stream": "ext://sys.stdout"}},
        "root": {"level": level.upper(), "handlers": ["default"]},
    }


def _the_redactor() -> SecretRedactor:
    return redactor
