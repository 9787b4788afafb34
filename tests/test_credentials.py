"""The vault: round trip, permissions, wrong passphrase, tampering, rotation, no plaintext leaks."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from polyroute import credentials
from polyroute.credentials import KdfParams, Vault
from polyroute.errors import CredentialError, WrongPassphraseError

FAST = KdfParams(n=2**10)  # tests only: the real cost is 2**15
KEY = "sk-ant-PLAINTEXT-secret-0123456789"


def vault(tmp_path: Path, passphrase: str = "correct horse") -> Vault:
    return Vault(tmp_path / "creds", passphrase, kdf=FAST)


def test_round_trip_and_permissions(tmp_path: Path) -> None:
    v = vault(tmp_path)
    v.set("anthropic-main", KEY)
    assert v.get("anthropic-main").reveal() == KEY
    assert v.list() == ["anthropic-main"]
    assert_private(tmp_path / "creds")
    for f in (tmp_path / "creds").rglob("*"):
        assert not f.is_file() or KEY.encode() not in f.read_bytes()
    assert KEY not in repr(v) and KEY not in repr(v.get("anthropic-main"))
    # a second vault object with the same passphrase reads it back (salt persisted)
    assert vault(tmp_path).get("anthropic-main").reveal() == KEY


def assert_private(directory: Path) -> None:
    """DESIGN §7: directories 0700, files 0600, all the way down."""
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
    for f in directory.rglob("*"):
        assert stat.S_IMODE(f.stat().st_mode) == (0o700 if f.is_dir() else 0o600), f


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
    with pytest.raises(WrongPassphraseError, match="wrong master passphrase"):
        vault(tmp_path, "wrong")


def test_flipped_byte_is_tampering_not_garbage(tmp_path: Path) -> None:
    v = vault(tmp_path)
    v.set("k", KEY)
    f = v.path("k")
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
    v.path("a").write_bytes(v.path("b").read_bytes())
    with pytest.raises(CredentialError, match="tampered"):
        v.get("a")


def test_rotation_reencrypts_under_the_new_passphrase(tmp_path: Path) -> None:
    v = vault(tmp_path, "old")
    v.set("k", KEY)
    before = v.path("k")
    v.rotate("new")
    assert v.path("k") != before and not before.exists()
    assert v.get("k").reveal() == KEY
    assert vault(tmp_path, "new").get("k").reveal() == KEY
    with pytest.raises(WrongPassphraseError, match="wrong master passphrase"):
        vault(tmp_path, "old")
    assert_private(tmp_path / "creds")


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


# -- crash-safe rotation ---------------------------------------------------------

IDS = ("anthropic-main", "openai", "x.y")
PRIMITIVES = ("open", "write", "fsync", "replace", "unlink", "rmdir", "mkdir")


class Killed(BaseException):
    """A stand-in for kill -9: nothing in polyroute catches it, so no cleanup runs."""


class Faults:
    """Counts the vault's file-system primitives and fails the ``fail_at``-th one."""

    def __init__(self, fail_at: int | None = None, exc: type[BaseException] = OSError) -> None:
        self.fail_at, self.exc, self.calls = fail_at, exc, 0

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for name in PRIMITIVES:
            monkeypatch.setattr(os, name, self._wrap(name, getattr(os, name)))

    def _wrap(self, name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def primitive(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            if self.calls == self.fail_at:
                raise self.exc(f"injected at step {self.calls} ({name})")
            return real(*args, **kwargs)

        return primitive


def filled(directory: Path) -> Vault:
    v = Vault(directory, "old", kdf=FAST)
    for cid in IDS:
        v.set(cid, f"{KEY}-{cid}")
    return v


def rotate_with(faults: Faults, v: Vault, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Rotate to "new" under ``faults``; whether rotate raised."""
    with monkeypatch.context() as m:
        faults.install(m)
        try:
            v.rotate("new")
        except (OSError, Killed):
            return True
    return False


def opens_with(directory: Path, passphrase: str) -> Vault | None:
    try:
        return Vault(directory, passphrase, kdf=FAST)
    except WrongPassphraseError:
        return None


def test_rotation_without_faults_counts_its_steps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    faults = Faults()
    assert not rotate_with(faults, filled(tmp_path / "v"), monkeypatch)
    assert faults.calls > 3 * len(IDS)  # every file written and fsynced, then the switch
    assert opens_with(tmp_path / "v", "new") is not None


@pytest.mark.parametrize("exc", [OSError, Killed])
def test_rotation_interrupted_at_every_step_opens_with_one_passphrase(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exc: type[BaseException]
) -> None:
    counter = Faults()
    rotate_with(counter, filled(tmp_path / "count"), monkeypatch)
    outcomes = []
    for k in range(1, counter.calls + 1):
        directory = tmp_path / f"step{k}"
        v = filled(directory)
        raised = rotate_with(Faults(k, exc), v, monkeypatch)
        old, new = opens_with(directory, "old"), opens_with(directory, "new")
        assert (old is None) != (new is None), f"step {k}: old={old} new={new}"
        opened = old or new
        assert opened is not None
        assert opened.list() == sorted(IDS), f"step {k}"
        for cid in IDS:
            assert opened.get(cid).reveal() == f"{KEY}-{cid}", f"step {k}"
        if exc is OSError:
            # an OSError out of rotate means nothing changed; a normal return, switched
            assert (old is not None) == raised, f"step {k}"
        outcomes.append("old" if old else "new")
        # the next write sweeps what the interruption left: one generation, no temp files
        opened.set("later", "a-later-key")
        names = {p.name for p in directory.iterdir()}
        generations = {n for n in names if n.startswith("gen-")}
        assert names - generations == {"vault.json", ".lock"}, f"step {k}: {names}"
        assert len(generations) == 1, f"step {k}: {names}"
        inside = {p.name for p in opened.path("later").parent.iterdir()}
        assert inside == {f"{cid}.cred" for cid in (*IDS, "later")}, f"step {k}"
        assert_private(directory)
    # the switch is one step: old before it, new from it on
    assert outcomes == sorted(outcomes, reverse=True)
    assert "old" in outcomes and "new" in outcomes


def test_rotation_after_an_interrupted_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    v = filled(tmp_path / "v")
    assert rotate_with(Faults(8, Killed), v, monkeypatch)  # a generation half written
    v = Vault(tmp_path / "v", "old", kdf=FAST)
    v.rotate("new")
    v = Vault(tmp_path / "v", "new", kdf=FAST)
    assert [v.get(cid).reveal() for cid in IDS] == [f"{KEY}-{cid}" for cid in IDS]
    assert len([p for p in (tmp_path / "v").iterdir() if p.is_dir()]) == 1


def test_a_vault_rotated_elsewhere_refuses_stale_writes(tmp_path: Path) -> None:
    stale = filled(tmp_path / "v")
    Vault(tmp_path / "v", "old", kdf=FAST).rotate("new")
    with pytest.raises(CredentialError, match="rotated since it was opened"):
        stale.set("k", KEY)
    assert Vault(tmp_path / "v", "new", kdf=FAST).list() == sorted(IDS)


def test_version_1_vault_opens_and_rotates_into_a_generation(tmp_path: Path) -> None:
    """Vaults written before generations: ``<id>.cred`` beside ``vault.json``."""
    d = tmp_path / "v"
    v = filled(d)
    for cid in IDS:
        os.replace(v.path(cid), d / f"{cid}.cred")
    os.rmdir(v.path("k").parent)
    meta = json.loads((d / "vault.json").read_text())
    del meta["generation"]
    (d / "vault.json").write_text(json.dumps({**meta, "version": 1}))
    legacy = Vault(d, "old", kdf=FAST)
    assert legacy.path("k").parent == d
    assert legacy.list() == sorted(IDS) and legacy.get("openai").reveal() == f"{KEY}-openai"
    legacy.rotate("new")
    v = Vault(d, "new", kdf=FAST)
    assert [v.get(cid).reveal() for cid in IDS] == [f"{KEY}-{cid}" for cid in IDS]
    assert not list(d.glob("*.cred"))
    assert json.loads((d / "vault.json").read_text())["version"] == 2


# -- tampered metadata -----------------------------------------------------------


def _set_kdf(key: str, value: object) -> Callable[[dict[str, Any]], object]:
    def edit(meta: dict[str, Any]) -> object:
        meta["kdf"][key] = value
        return meta

    return edit


def _drop(key: str) -> Callable[[dict[str, Any]], object]:
    def edit(meta: dict[str, Any]) -> object:
        del meta[key]
        return meta

    return edit


def _put(key: str, value: object) -> Callable[[dict[str, Any]], object]:
    def edit(meta: dict[str, Any]) -> object:
        meta[key] = value
        return meta

    return edit


TAMPERED: dict[str, Callable[[dict[str, Any]], object]] = {
    "n is a string": _set_kdf("n", "x"),
    "n = 2**40": _set_kdf("n", 2**40),
    "n negative": _set_kdf("n", -1024),
    "n zero": _set_kdf("n", 0),
    "n not a power of two": _set_kdf("n", 1000),
    "n a float": _set_kdf("n", 1024.0),
    "n a bool": _set_kdf("n", True),
    "n * r over 256 MiB": lambda m: {**m, "kdf": {"n": 2**20, "r": 8, "p": 1}},
    "r absurd": _set_kdf("r", 10**6),
    "r zero": _set_kdf("r", 0),
    "p absurd": _set_kdf("p", 2**31),
    "p null": _set_kdf("p", None),
    "kdf missing": _drop("kdf"),
    "kdf a list": _put("kdf", [1, 2, 3]),
    "kdf extra key": _set_kdf("maxmem", 0),
    "salt missing": _drop("salt"),
    "salt a number": _put("salt", 123),
    "salt not base64": _put("salt", "!!not base64!!"),
    "salt too short": _put("salt", "AAAA"),
    "verifier missing": _drop("verifier"),
    "verifier a list": _put("verifier", []),
    "version unknown": _put("version", 99),
    "generation escapes": _put("generation", "../../etc"),
    "generation a number": _put("generation", 7),
    "not an object": lambda m: [m],
}


@pytest.mark.parametrize("edit", TAMPERED.values(), ids=TAMPERED.keys())
def test_tampered_metadata_is_a_clear_error_before_scrypt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, edit: Callable[[dict[str, Any]], object]
) -> None:
    vault(tmp_path).set("k", KEY)
    meta_path = tmp_path / "creds" / "vault.json"
    meta_path.write_text(json.dumps(edit(json.loads(meta_path.read_text()))))

    def no_scrypt(*_: object) -> bytes:
        raise AssertionError("scrypt ran on unchecked parameters")

    monkeypatch.setattr(credentials, "_derive", no_scrypt)
    with pytest.raises(CredentialError, match="damaged vault metadata") as info:
        vault(tmp_path)
    assert not isinstance(info.value, WrongPassphraseError)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("text", ["not json {", "[" * 100_000, "\xff\xfe"])
def test_unreadable_metadata_is_a_clear_error(tmp_path: Path, text: str) -> None:
    vault(tmp_path).set("k", KEY)
    (tmp_path / "creds" / "vault.json").write_bytes(text.encode("latin-1"))
    with pytest.raises(CredentialError, match="damaged vault metadata"):
        vault(tmp_path)


def test_what_we_write_is_within_the_bounds(tmp_path: Path) -> None:
    assert KdfParams().checked() == KdfParams()
    with pytest.raises(CredentialError, match=r"kdf\.n"):
        Vault(tmp_path / "v", "p", kdf=KdfParams(n=3))
