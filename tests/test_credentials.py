"""The vault: round trip, permissions, wrong passphrase, tampering, rotation, no plaintext leaks."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from polyroute.credentials import KdfParams, Vault
from polyroute.errors import CredentialError

FAST = KdfParams(n=2**10)  # tests only: the real cost is 2**15
KEY = "sk-ant-PLAINTEXT-secret-0123456789"


def vault(tmp_path: Path, passphrase: str = "correct horse") -> Vault:
    return Vault(tmp_path / "creds", passphrase, kdf=FAST)


def test_round_trip_and_permissions(tmp_path: Path) -> None:
    v = vault(tmp_path)
    v.set("anthropic-main", KEY)
    assert v.get("anthropic-main").reveal() == KEY
    assert v.list() == ["anthropic-main"]
    d = tmp_path / "creds"
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    for f in d.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
        assert KEY.encode() not in f.read_bytes()
    assert KEY not in repr(v) and KEY not in repr(v.get("anthropic-main"))
    # a second vault object with the same passphrase reads it back (salt persisted)
    assert vault(tmp_path).get("anthropic-main").reveal() == KEY


def test_salt_is_random_per_vault(tmp_path: Path) -> None:
    a = Vault(tmp_path / "a", "same", kdf=FAST)
    b = Vault(tmp_path / "b", "same", kdf=FAST)
    a.set("k", KEY)
    b.set("k", KEY)
    assert (tmp_path / "a" / "vault.json").read_text() != (
        tmp_path / "b" / "vault.json"
    ).read_text()


def test_wrong_passphrase_is_a_clear_error(tmp_path: Path) -> None:
    vault(tmp_path).set("k", KEY)
    with pytest.raises(CredentialError, match="wrong master passphrase"):
        vault(tmp_path, "wrong")


def test_flipped_byte_is_tampering_not_garbage(tmp_path: Path) -> None:
    v = vault(tmp_path)
    v.set("k", KEY)
    f = tmp_path / "creds" / "k.cred"
    data = bytearray(f.read_bytes())
    data[20] ^= 0x01
    f.write_bytes(bytes(data))
    with pytest.raises(CredentialError, match="tampered") as info:
        v.get("k")
    assert KEY not in str(info.value)


def test_swapped_files_fail(tmp_path: Path) -> None:
    v = vault(tmp_path)
    v.set("a", KEY)
    v.set("b", "other-key-value")
    d = tmp_path / "creds"
    (d / "a.cred").write_bytes((d / "b.cred").read_bytes())
    with pytest.raises(CredentialError, match="tampered"):
        v.get("a")


def test_rotation_reencrypts_under_the_new_passphrase(tmp_path: Path) -> None:
    v = vault(tmp_path, "old")
    v.set("k", KEY)
    before = (tmp_path / "creds" / "k.cred").read_bytes()
    v.rotate("new")
    assert (tmp_path / "creds" / "k.cred").read_bytes() != before
    assert vault(tmp_path, "new").get("k").reveal() == KEY
    with pytest.raises(CredentialError, match="wrong master passphrase"):
        vault(tmp_path, "old")


@pytest.mark.parametrize("bad", ["", "../etc", "a/b", "x" * 65, ".hidden"])
def test_bad_ids_and_values(tmp_path: Path, bad: str) -> None:
    v = vault(tmp_path)
    with pytest.raises(CredentialError, match="bad credential id"):
        v.set(bad, KEY)


def test_missing_and_empty(tmp_path: Path) -> None:
    v = vault(tmp_path)
    with pytest.raises(CredentialError, match="no credential 'nope'"):
        v.get("nope")
    with pytest.raises(CredentialError, match="empty"):
        v.set("k", "")
    with pytest.raises(CredentialError, match="POLYROUTE_MASTER_KEY"):
        Vault(tmp_path / "x", "")
