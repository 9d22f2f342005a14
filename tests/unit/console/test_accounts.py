"""Console accounts: argon2id hashes in a 0600 file, roles, and wrong names as slow as wrong
passwords."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from pipeline.console.accounts import AccountError, Accounts
from tests.unit.console.conftest import QUICK_HASHER


def quick(path: Path) -> Accounts:
    """Accounts hashing with cheap parameters; the first test keeps argon2's own."""
    return Accounts(path, hasher=QUICK_HASHER)


def test_users_are_stored_as_argon2id_hashes_in_a_private_file(tmp_path: Path) -> None:
    accounts = Accounts(tmp_path / "console" / "accounts.json")
    account = accounts.set_password("olga", "a long enough password", role="operator")
    assert account.can_change
    stored = json.loads(accounts.path.read_text())["users"]["olga"]
    assert stored["hash"].startswith("$argon2id$") and "a long enough" not in stored["hash"]
    assert stat.S_IMODE(accounts.path.stat().st_mode) == 0o600


def test_authenticate_knows_the_password_and_the_role(tmp_path: Path) -> None:
    accounts = quick(tmp_path / "accounts.json")
    accounts.set_password("vera", "a long enough password", role="viewer")
    vera = accounts.authenticate("vera", "a long enough password")
    assert vera is not None and vera.role == "viewer" and not vera.can_change
    assert accounts.authenticate("vera", "another password!") is None
    assert accounts.authenticate("nobody", "a long enough password") is None


def test_another_process_adding_a_user_is_seen(tmp_path: Path) -> None:
    path = tmp_path / "accounts.json"
    serving = quick(path)
    assert serving.get("olga") is None
    quick(path).set_password("olga", "a long enough password", role="operator")
    assert serving.get("olga") is not None
    quick(path).set_password("olga", "a long enough password", role="viewer")
    account = serving.get("olga")
    assert account is not None and account.role == "viewer"
    assert Accounts(path).remove("olga") and serving.get("olga") is None


@pytest.mark.parametrize(("name", "password", "role", "why"), [
    ("olga", "short", "operator", "at least 10"),
    ("ol ga", "a long enough password", "operator", "user name"),
    ("olga", "a long enough password", "admin", "role"),
])
def test_bad_accounts_are_refused(tmp_path: Path, name: str, password: str, role: str,
                                  why: str) -> None:
    with pytest.raises(AccountError, match=why):
        quick(tmp_path / "a.json").set_password(name, password, role=role)
