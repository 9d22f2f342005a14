"""HMAC-SHA256 signatures for operator commands, over canonical JSON."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

__all__ = ["canonical", "sign", "verify"]


def canonical(command: dict[str, Any]) -> bytes:
    return json.dumps(command, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode()


def sign(command: dict[str, Any], key: bytes) -> str:
    return hmac.new(key, canonical(command), hashlib.sha256).hexdigest()


def verify(command: dict[str, Any], signature: str, key: bytes) -> bool:
    return hmac.compare_digest(sign(command, key), signature)
