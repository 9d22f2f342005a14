"""Producer tokens of the HTTP ingest: a JSON file of SHA-256 hashes, each with its tenants."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["PREFIX", "Producer", "TokenError", "TokenFile", "hash_token", "new_token"]

log = logging.getLogger(__name__)

# Recognisable in a leak (secret scanners, grep); 32 random bytes follow, so one SHA-256 is
# enough to store it: there is nothing to brute-force that a slow hash would protect.
PREFIX = "csi_"
NAME = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")
TENANT = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")  # schemas.call_event's Ident
# Compared against when the file holds no token, so an empty store costs what a full one does.
_NOTHING = hashlib.sha256(b"callsync-ingest-no-token").hexdigest()


class TokenError(ValueError):
    """A bad name, tenant or tokens file; the message never holds a token."""


def new_token() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class Producer:
    """Who a token belongs to and the tenants it may publish for."""

    name: str
    tenants: frozenset[str]

    def allows(self, tenant_id: str) -> bool:
        return tenant_id in self.tenants


def _entry(name: str, raw: Any) -> tuple[str, Producer]:
    if not NAME.match(name) or not isinstance(raw, dict):
        raise TokenError(f"entry {name[:64]!r} is not a producer")
    digest, tenants = raw.get("sha256"), raw.get("tenants")
    if not (isinstance(digest, str) and re.fullmatch(r"[0-9a-f]{64}", digest)):
        raise TokenError(f"{name}: sha256 is not a SHA-256 hex digest")
    if not (isinstance(tenants, list) and tenants
            and all(isinstance(t, str) and TENANT.match(t) for t in tenants)):
        raise TokenError(f"{name}: tenants is not a list of tenant ids")
    return digest, Producer(name=name, tenants=frozenset(tenants))


class TokenFile:
    """`{"producers": {name: {"sha256": hex, "tenants": [...], "created_at": …}}}`, re-read
    when the file changes (a revocation takes effect on the next request). A file that turns
    unreadable keeps the last good one in force and is logged; at start-up it is an error."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._seen: tuple[int, int, int] | None = None  # the file as last read
        self._failed: tuple[int, int, int] | None = None  # the file as last refused
        self._raw: dict[str, dict[str, Any]] = {}
        self._by_hash: list[tuple[str, Producer]] = []

    def load(self) -> int:
        """Read the file now, raising TokenError if it is missing or bad; how many producers."""
        with self._lock:
            self._seen = None
            self._refresh(strict=True)
            return len(self._raw)

    def _refresh(self, *, strict: bool) -> None:
        seen: tuple[int, int, int] | None = None  # None: no file to stat
        try:
            stat = self.path.stat()
            seen = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
            if seen == self._seen or (seen == self._failed and not strict):
                return
            data = json.loads(self.path.read_text())
            producers = data.get("producers") if isinstance(data, dict) else None
            if not isinstance(producers, dict):
                raise TokenError("it has no \"producers\" object")
            by_hash = [_entry(str(name), raw) for name, raw in producers.items()]
        except (OSError, ValueError) as exc:
            why = exc if isinstance(exc, TokenError) else type(exc).__name__
            if strict:
                raise TokenError(f"the tokens file {self.path} cannot be used: {why}") from None
            if seen != self._failed or (seen is None and self._seen is not None):
                log.error("the tokens file %s cannot be used (%s); the last good one stays in "
                          "force", self.path, why)
            self._failed, self._seen = seen, None
            return
        self._raw, self._by_hash, self._seen, self._failed = dict(producers), by_hash, seen, None

    def authenticate(self, token: str) -> Producer | None:
        """The producer whose token this is. Every stored hash is compared, in constant time."""
        digest = hash_token(token).encode()
        with self._lock:
            self._refresh(strict=False)
            entries = self._by_hash or [(_NOTHING, Producer(name="", tenants=frozenset()))]
        found = None
        for stored, producer in entries:
            if hmac.compare_digest(stored.encode(), digest) and producer.name:
                found = producer
        return found

    def producers(self) -> list[Producer]:
        """Every producer in the file (none if there is no file yet); a bad file raises."""
        if not self.path.exists():
            return []
        self.load()
        with self._lock:
            return sorted((p for _, p in self._by_hash), key=lambda p: p.name)

    def _current(self) -> dict[str, dict[str, Any]]:
        if not self.path.exists():
            return {}
        self.load()
        return dict(self._raw)

    def add(self, name: str, tenants: list[str]) -> str:
        """A new token for `name` (which must be new); returns the token, stores its hash."""
        if not NAME.match(name):
            raise TokenError("a producer name is 1-64 letters, digits or ._@-")
        bad = [t for t in tenants if not TENANT.match(t)]
        if not tenants or bad:
            raise TokenError(f"tenants must be tenant ids (letters, digits, ._:-); bad: {bad}")
        producers = self._current()
        if name in producers:
            raise TokenError(f"a producer {name} exists: revoke it first")
        token = new_token()
        producers[name] = {"sha256": hash_token(token), "tenants": sorted(set(tenants)),
                           "created_at": datetime.now(UTC).isoformat(timespec="seconds")}
        self._save(producers)
        return token

    def revoke(self, name: str) -> bool:
        producers = self._current()
        if producers.pop(name, None) is None:
            return False
        self._save(producers)
        return True

    def _save(self, producers: dict[str, dict[str, Any]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump({"producers": producers}, out, indent=2, sort_keys=True)
            out.write("\n")
        tmp.replace(self.path)  # atomic: a server re-reading it never sees half a file
        self.load()
