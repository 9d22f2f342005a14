"""Envelope encryption: the format, tampering, rotation, and the KEK setting."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import SecretStr

from pipeline.config import (
    SecretsSettings,
    Settings,
    SettingsError,
    load_settings,
    require_worker_secrets,
)
from pipeline.observability.logs import REDACTED
from pipeline.secrets import (
    KeyRing,
    MalformedEnvelope,
    SecretError,
    TamperedEnvelope,
    UnknownKeyId,
    kid_of,
    scrub,
    scrub_json,
)

KEK = bytes(range(32))
RING = KeyRing([("v1", KEK)])
SECRET = "retailcrm-key-0123456789"
# Made once with RING for tenant 'acme'; decrypting it guards the stored format.
VECTOR = ("enc:v1:v1:GUSaCJTBIj2JfsM3GTaMjxUW30PBYjVNnZ521MDUGGlPEfujy_QuK59yEXFXNQibX8PqDcMN5S"
          "Kj2QZg:4OWiJUFKIjVBUpvLYrpOULIB7Z8HbhRSegaAJPnvLAvoSAwkM_fN87-mQLXdd-oeEKT5pg==")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_the_stored_vector_decrypts() -> None:
    assert RING.decrypt(VECTOR, tenant_id="acme") == SECRET


def test_an_envelope_built_by_hand_from_the_documented_format_decrypts() -> None:
    dek, nonce, wrap_nonce = bytes(32), b"\x01" * 12, b"\x02" * 12
    data = nonce + AESGCM(dek).encrypt(nonce, b"k-1", b"callsync:v1:api_key:acme")
    wrapped = wrap_nonce + AESGCM(KEK).encrypt(wrap_nonce, dek, b"callsync:v1:dek:v1:acme")
    envelope = (f"enc:v1:v1:{base64.urlsafe_b64encode(wrapped).decode()}:"
                f"{base64.urlsafe_b64encode(data).decode()}")
    assert RING.decrypt(envelope, tenant_id="acme") == "k-1"


def test_each_encryption_is_fresh_and_names_the_current_key() -> None:
    one, two = (RING.encrypt(SECRET, tenant_id="acme") for _ in range(2))
    assert one != two and kid_of(one) == "v1" and SECRET not in one
    assert RING.decrypt(one, tenant_id="acme") == RING.decrypt(two, tenant_id="acme") == SECRET


def flip(envelope: str, part: int) -> str:
    head, kid, wrapped, data = envelope.rsplit(":", 3)
    parts = [wrapped, data]
    raw = bytearray(base64.urlsafe_b64decode(parts[part]))
    raw[-1] ^= 1
    parts[part] = base64.urlsafe_b64encode(bytes(raw)).decode()
    return ":".join([head, kid, *parts])


@pytest.mark.parametrize(("change", "error"), [
    (lambda env: (env, "evil"), TamperedEnvelope),  # copied into another tenant's config
    (lambda env: (flip(env, 0), "acme"), TamperedEnvelope),
    (lambda env: (flip(env, 1), "acme"), TamperedEnvelope),
    (lambda env: (env.replace(":v1:v1:", ":v1:v0:"), "acme"), UnknownKeyId),
    (lambda env: (env[:-8], "acme"), TamperedEnvelope),  # cut short
    (lambda env: (env.rsplit(":", 1)[0] + ":AAAA", "acme"), MalformedEnvelope),
    (lambda env: (env.replace("enc:v1:", "enc:v2:"), "acme"), MalformedEnvelope),
    (lambda env: (SECRET, "acme"), MalformedEnvelope),
    (lambda env: (env.rsplit(":", 1)[0] + ":!!", "acme"), MalformedEnvelope),
])
def test_tampering_is_a_typed_error_and_never_the_plaintext(change: object,
                                                            error: type[SecretError]) -> None:
    assert callable(change)
    envelope, tenant = change(VECTOR)
    with pytest.raises(error) as raised:
        RING.decrypt(envelope, tenant_id=tenant)
    assert SECRET not in str(raised.value) and b64(KEK) not in str(raised.value)


def test_another_key_under_the_same_id_does_not_open_it() -> None:
    impostor = KeyRing([("v1", bytes(32))])
    with pytest.raises(TamperedEnvelope):
        impostor.decrypt(VECTOR, tenant_id="acme")


def test_rotation_new_first_old_accepted_then_only_new() -> None:
    old = KeyRing([("old", b"o" * 32)])
    stored = old.encrypt(SECRET, tenant_id="acme")
    rotating = KeyRing.parse(f"new:{b64(b'n' * 32)}, old:{b64(b'o' * 32)}")
    assert rotating.current == "new" and rotating.kids == ("new", "old")
    assert rotating.decrypt(stored, tenant_id="acme") == SECRET
    rekeyed = rotating.reencrypt(stored, tenant_id="acme")
    assert kid_of(rekeyed) == "new"
    assert rotating.decrypt(rekeyed, tenant_id="acme") == SECRET
    after = KeyRing.parse(f"new:{b64(b'n' * 32)}")
    assert after.decrypt(rekeyed, tenant_id="acme") == SECRET
    with pytest.raises(UnknownKeyId):
        after.decrypt(stored, tenant_id="acme")


@pytest.mark.parametrize(("text", "problem"), [
    ("", "item 1 is not kid:base64-key"),
    ("k1", "item 1 is not kid:base64-key"),
    (f"k1:{b64(b'x' * 31)}", "key 'k1' must be 32 bytes"),
    ("k1:not base64!", "key 'k1' is not standard base64"),
    (f"k1:{b64(KEK)},k1:{b64(KEK)}", "key id 'k1' is given twice"),
    (f"bad id:{b64(KEK)}", "key id 'bad id' must be"),
])
def test_a_bad_key_setting_names_the_problem_not_the_key(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem) as raised:
        KeyRing.parse(text)
    assert b64(KEK) not in str(raised.value)


def test_a_bad_setting_stops_start_up_naming_the_variable(
        monkeypatch: pytest.MonkeyPatch) -> None:
    value = f"k1:{b64(b'x' * 31)}"
    monkeypatch.setenv("CALLSYNC_SECRETS__KEYS", value)
    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert "CALLSYNC_SECRETS__KEYS" in str(raised.value)
    assert b64(b"x" * 31) not in str(raised.value)


def test_a_worker_needs_the_kek_and_the_operator_key() -> None:
    keys = SecretsSettings(keys=SecretStr(f"k1:{b64(KEK)}"))
    with pytest.raises(SettingsError) as raised:
        require_worker_secrets(Settings(operator_key=SecretStr("op")))
    assert "CALLSYNC_SECRETS__KEYS: required by the worker" in str(raised.value)
    with pytest.raises(SettingsError, match="CALLSYNC_OPERATOR_KEY"):
        require_worker_secrets(Settings(secrets=keys))
    assert require_worker_secrets(Settings(operator_key=SecretStr("op"), secrets=keys)
                                  ).current == "k1"


def test_nothing_prints_a_key() -> None:
    settings = Settings(secrets=SecretsSettings(keys=SecretStr(f"k1:{b64(KEK)}")))
    for text in (repr(settings), str(settings), repr(settings.secrets.keyring()),
                 settings.model_dump_json()):
        assert b64(KEK) not in text


def test_scrub_removes_every_form_of_a_secret() -> None:
    key = "k+ey/with=odd&chars"
    text = f"raw {key}, url k%2Bey%2Fwith%3Dodd%26chars, b64 {b64(key.encode())}"
    assert scrub(text, [key]) == f"raw {REDACTED}, url {REDACTED}, b64 {REDACTED}"
    assert scrub_json({"a": [key], key: 1}, [key]) == {"a": [REDACTED], REDACTED: 1}
