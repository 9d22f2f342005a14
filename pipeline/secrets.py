"""Envelope encryption of tenant API keys: an AES-GCM data key per secret, wrapped by a KEK."""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pipeline.observability.logs import REDACTED, secret_forms

__all__ = ["PREFIX", "KeyRing", "MalformedEnvelope", "SecretError", "TamperedEnvelope",
           "UnknownKeyId", "is_envelope", "kid_of", "scrub", "scrub_json"]

PREFIX = "enc:v1:"
KID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
WRAPPED_BYTES = NONCE_BYTES + KEY_BYTES + TAG_BYTES


class SecretError(Exception):
    """An envelope that cannot be opened; the message never carries key material."""


class MalformedEnvelope(SecretError):
    pass


class UnknownKeyId(SecretError):
    def __init__(self, kid: str) -> None:
        super().__init__(f"no key-encryption key with id {kid!r} (CALLSYNC_SECRETS__KEYS)")
        self.kid = kid


class TamperedEnvelope(SecretError):
    """Authentication failed: another tenant's envelope, another key under this id, or a
    changed byte."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode()


def _unb64(text: str) -> bytes:
    try:
        return base64.b64decode(text.encode(), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise MalformedEnvelope("the envelope is not base64") from None


def _data_aad(tenant_id: str) -> bytes:
    # Binds the ciphertext to its tenant: an envelope copied into another config fails.
    return b"callsync:v1:api_key:" + tenant_id.encode()


def _wrap_aad(kid: str, tenant_id: str) -> bytes:
    return b"callsync:v1:dek:" + kid.encode() + b":" + tenant_id.encode()


def is_envelope(value: object) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)


def kid_of(envelope: str) -> str:
    return _split(envelope)[0]


def _split(envelope: str) -> tuple[str, str, str]:
    if not is_envelope(envelope):
        raise MalformedEnvelope(f"not an envelope (it must start with {PREFIX!r})")
    parts = envelope[len(PREFIX):].split(":")
    if len(parts) != 3 or not KID.match(parts[0]):
        raise MalformedEnvelope("an envelope is enc:v1:<kid>:<wrapped key>:<ciphertext>")
    return parts[0], parts[1], parts[2]


class KeyRing:
    """Key-encryption keys by id: the first encrypts, all of them decrypt (during a rotation)."""

    def __init__(self, keys: Sequence[tuple[str, bytes]]) -> None:
        if not keys:
            raise ValueError("at least one key-encryption key is needed")
        self._keks: dict[str, AESGCM] = {}
        for kid, key in keys:
            if not KID.match(kid):
                raise ValueError(f"key id {kid!r} must be 1-32 of A-Z a-z 0-9 _ -")
            if kid in self._keks:
                raise ValueError(f"key id {kid!r} is given twice")
            if len(key) != KEY_BYTES:
                raise ValueError(f"key {kid!r} must be {KEY_BYTES} bytes, base64-encoded "
                                 f"(it has {len(key)})")
            self._keks[kid] = AESGCM(key)
        self.current = keys[0][0]

    @classmethod
    def parse(cls, text: str) -> KeyRing:
        """`kid:base64,kid:base64…`; errors name the key id and the problem, never the key."""
        keys: list[tuple[str, bytes]] = []
        for n, item in enumerate(p.strip() for p in text.split(",")):
            kid, sep, encoded = item.partition(":")
            if not sep or not kid:
                raise ValueError(f"item {n + 1} is not kid:base64-key")
            try:
                key = base64.b64decode(encoded.strip().encode(), validate=True)
            except (binascii.Error, ValueError):
                raise ValueError(f"key {kid!r} is not standard base64") from None
            keys.append((kid, key))
        return cls(keys)

    @property
    def kids(self) -> tuple[str, ...]:
        return tuple(self._keks)

    def __repr__(self) -> str:
        return f"KeyRing(current={self.current!r}, kids={self.kids!r})"

    def encrypt(self, secret: str, *, tenant_id: str) -> str:
        """A fresh data key encrypts the secret; the current KEK wraps the data key."""
        dek = AESGCM.generate_key(bit_length=256)
        nonce, wrap_nonce = os.urandom(NONCE_BYTES), os.urandom(NONCE_BYTES)
        data = nonce + AESGCM(dek).encrypt(nonce, secret.encode(), _data_aad(tenant_id))
        wrapped = wrap_nonce + self._keks[self.current].encrypt(
            wrap_nonce, dek, _wrap_aad(self.current, tenant_id))
        return f"{PREFIX}{self.current}:{_b64(wrapped)}:{_b64(data)}"

    def decrypt(self, envelope: str, *, tenant_id: str) -> str:
        kid, wrapped_text, data_text = _split(envelope)
        kek = self._keks.get(kid)
        if kek is None:
            raise UnknownKeyId(kid)
        wrapped, data = _unb64(wrapped_text), _unb64(data_text)
        if len(wrapped) != WRAPPED_BYTES or len(data) < NONCE_BYTES + TAG_BYTES:
            raise MalformedEnvelope("the envelope's parts have the wrong length")
        try:
            dek = kek.decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:],
                              _wrap_aad(kid, tenant_id))
            plain = AESGCM(dek).decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:],
                                        _data_aad(tenant_id))
        except InvalidTag:
            raise TamperedEnvelope(f"the envelope does not open for tenant {tenant_id!r} "
                                   f"with key {kid!r}") from None
        try:
            return plain.decode()
        except UnicodeDecodeError:
            raise TamperedEnvelope("the secret is not UTF-8") from None

    def reencrypt(self, envelope: str, *, tenant_id: str) -> str:
        """The same secret under the current key (a new data key too)."""
        return self.encrypt(self.decrypt(envelope, tenant_id=tenant_id), tenant_id=tenant_id)


def _forms(secrets: Iterable[str]) -> list[str]:
    forms: set[str] = set()
    for secret in secrets:
        if len(secret) >= 4:
            forms |= secret_forms(secret)
    return sorted(forms, key=len, reverse=True)


def _without(text: str, forms: Sequence[str]) -> str:
    for form in forms:
        text = text.replace(form, REDACTED)
    return text


def scrub(text: str, secrets: Iterable[str]) -> str:
    """`text` without any of `secrets`, in any form they take in text (raw, URL, base64)."""
    return _without(text, _forms(secrets))


def scrub_json(value: Any, secrets: Sequence[str]) -> Any:
    """A JSON-like value with every string (keys too) scrubbed. The forms of the secrets are
    made once: made per string, a 4 MiB error answer of 290,000 entries held the event loop
    for 2.6 s. Raises RecursionError for a value nested deeper than the stack."""
    if not secrets:
        return value
    forms = _forms(secrets)

    def walk(item: Any) -> Any:
        if isinstance(item, str):
            return _without(item, forms)
        if isinstance(item, Mapping):
            return {walk(k): walk(v) for k, v in item.items()}
        if isinstance(item, list | tuple):
            return [walk(v) for v in item]
        return item

    return walk(value)
