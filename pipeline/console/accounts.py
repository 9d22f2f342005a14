"""Console operator accounts: a small JSON file of argon2id password hashes and roles."""

from __future__ import annotations

import json
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

__all__ = ["ROLES", "Account", "AccountError", "Accounts", "Role"]

Role = Literal["operator", "viewer"]
ROLES: tuple[Role, ...] = ("operator", "viewer")
NAME = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")
MIN_PASSWORD = 10
_hasher = PasswordHasher()
# Verified against when the name is unknown, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = _hasher.hash("callsync-console-no-such-user")


class AccountError(ValueError):
    pass


@dataclass(frozen=True)
class Account:
    name: str
    role: Role

    @property
    def can_change(self) -> bool:
        """Only operators send changing commands; viewers read and ask for status."""
        return self.role == "operator"


class Accounts:
    """`{"users": {name: {"hash": argon2id, "role": …}}}`, re-read when the file changes."""

    def __init__(self, path: Path, *, hasher: PasswordHasher | None = None) -> None:
        self.path = path
        # argon2's own parameters unless given (tests give cheap ones: a hash costs ~0.3 s).
        self._hasher = hasher or _hasher
        self._dummy = _DUMMY_HASH if hasher is None else \
            hasher.hash("callsync-console-no-such-user")
        self._lock = threading.Lock()
        self._seen: tuple[int, int] | None = None
        self._users: dict[str, dict[str, str]] = {}

    def _load(self) -> dict[str, dict[str, str]]:
        with self._lock:
            try:
                stat = self.path.stat()
            except FileNotFoundError:
                self._seen, self._users = None, {}
                return self._users
            if self._seen != (stat.st_mtime_ns, stat.st_size):
                data = json.loads(self.path.read_text())
                self._users = dict(data.get("users", {}))
                self._seen = (stat.st_mtime_ns, stat.st_size)
            return self._users

    def _save(self, users: dict[str, dict[str, str]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump({"users": users}, out, indent=2, sort_keys=True)
        tmp.replace(self.path)
        stat = self.path.stat()
        with self._lock:
            self._users, self._seen = users, (stat.st_mtime_ns, stat.st_size)

    def get(self, name: str) -> Account | None:
        entry = self._load().get(name)
        if entry is None or entry.get("role") not in ROLES:
            return None
        role: Role = "operator" if entry["role"] == "operator" else "viewer"
        return Account(name=name, role=role)

    def names(self) -> list[tuple[str, str]]:
        return sorted((name, e.get("role", "?")) for name, e in self._load().items())

    def authenticate(self, name: str, password: str) -> Account | None:
        """The account if the password is right; a hash from older parameters is renewed."""
        entry = self._load().get(name)
        stored = entry["hash"] if entry else self._dummy
        try:
            self._hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return None
        if entry is None:
            return None
        if self._hasher.check_needs_rehash(stored):
            self.set_password(name, password, role=entry.get("role", "viewer"))
        return self.get(name)

    def set_password(self, name: str, password: str, *, role: str) -> Account:
        """Add the user, or change their password and role."""
        if not NAME.match(name):
            raise AccountError("a user name is 1-64 letters, digits or ._@-")
        if role not in ROLES:
            raise AccountError(f"the role is one of {', '.join(ROLES)}")
        if len(password) < MIN_PASSWORD:
            raise AccountError(f"a password has at least {MIN_PASSWORD} characters")
        users = dict(self._load())
        users[name] = {"hash": self._hasher.hash(password), "role": role}
        self._save(users)
        account = self.get(name)
        assert account is not None  # noqa: S101 - just written
        return account

    def remove(self, name: str) -> bool:
        users = dict(self._load())
        if users.pop(name, None) is None:
            return False
        self._save(users)
        return True
