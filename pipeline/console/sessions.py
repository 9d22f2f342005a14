"""Signed session cookies: who is signed in and the session's CSRF token, HMAC-SHA256 sealed."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["COOKIE", "Session", "SessionCodec", "load_or_create_secret"]

COOKIE = "callsync_console"


@dataclass(frozen=True)
class Session:
    user: str | None
    csrf: str
    expires: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionCodec:
    """A session lives in its cookie (nothing to store server-side); the signature makes it
    unforgeable and `expires` ends it. A new sign-in always gets a new CSRF token."""

    def __init__(self, secret: bytes, *, max_age: int = 8 * 3600,
                 clock: Callable[[], float] = time.time) -> None:
        if len(secret) < 32:
            raise ValueError("the session secret needs at least 32 bytes")
        self._secret = secret
        self.max_age = max_age
        self._clock = clock

    def new(self, user: str | None) -> Session:
        return Session(user=user, csrf=secrets.token_urlsafe(32),
                       expires=int(self._clock()) + self.max_age)

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._secret, payload.encode(), hashlib.sha256).digest())

    def dump(self, session: Session) -> str:
        payload = _b64(json.dumps({"u": session.user, "c": session.csrf,
                                   "e": session.expires}, separators=(",", ":")).encode())
        return f"{payload}.{self._sign(payload)}"

    def load(self, cookie: str | None) -> Session | None:
        """The session, or None when the cookie is missing, forged, malformed or expired."""
        if not cookie or cookie.count(".") != 1:
            return None
        payload, signature = cookie.split(".")
        if not hmac.compare_digest(self._sign(payload), signature):
            return None
        try:
            data = json.loads(_unb64(payload))
            session = Session(user=data["u"], csrf=str(data["c"]), expires=int(data["e"]))
        except (ValueError, KeyError, TypeError):
            return None
        if session.user is not None and not isinstance(session.user, str):
            return None
        return session if session.expires > self._clock() else None


def load_or_create_secret(path: Path) -> bytes:
    """The key that signs sessions, kept in a 0600 file so sessions survive a restart."""
    if path.exists():
        secret = bytes.fromhex(path.read_text().strip())
        if len(secret) >= 32:
            return secret
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(secret.hex())
    return secret
