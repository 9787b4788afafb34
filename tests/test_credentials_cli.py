"""``polyroute credentials`` and ``api_key = "vault:ID"``: set, list, delete, rotate, every failure."""

from __future__ import annotations

import errno
import json
import os
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from polyroute.cli import cli
from polyroute.config import load
from polyroute.credentials import KdfParams, Vault
from polyroute.errors import ConfigError, WrongPassphraseError
from polyroute.testing import Fleet

FAST = KdfParams(n=2**10)  # tests only: the real cost is 2**15
PASS = "correct horse battery staple"
KEY = "sk-vault-cli-0123456789abcdef"
SIM_ENV_LINE = 'api_key = "env:POLYROUTE_SIM_KEY"'


def invoke(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


def one_error_line(r: Result) -> str:
    """The single stderr line of a failed command (and no traceback)."""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("polyroute: error: ")
    return lines[0]


@pytest.fixture
def vault_dir(tmp_path: Path) -> Path:
    """Where the vault lives by default: $POLYROUTE_HOME/credentials (set by conftest)."""
    return tmp_path / "home" / "credentials"


@pytest.fixture
def vault(vault_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Vault:
    """An empty vault, cheap to unlock, with $POLYROUTE_MASTER_KEY set to its passphrase."""
    monkeypatch.setenv("POLYROUTE_MASTER_KEY", PASS)
    return Vault(vault_dir, PASS, kdf=FAST)


# -- set, list, delete ---------------------------------------------------------


def test_set_from_stdin_list_and_json(vault: Vault) -> None:
    r = invoke("credentials", "set", "openai-main", input=KEY + "\n")
    assert r.exit_code == 0, r.stderr
    assert "stored credential 'openai-main'" in r.stdout
    assert KEY not in r.stdout + r.stderr
    assert Vault(vault.directory, PASS).get("openai-main").reveal() == KEY  # newline stripped

    table = invoke("credentials", "list")
    assert table.exit_code == 0 and "openai-main" in table.stdout and KEY not in table.stdout
    js = invoke("credentials", "list", "--json")
    assert json.loads(js.stdout) == {"credentials": [{"id": "openai-main"}]}


def test_set_again_replaces(vault: Vault) -> None:
    assert invoke("credentials", "set", "k", input="first-value").exit_code == 0
    r = invoke("credentials", "set", "k", input="  second-value \n")
    assert r.exit_code == 0 and "replaced credential 'k'" in r.stdout
    assert vault.get("k").reveal() == "second-value"


def test_set_from_env(vault: Vault, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_VENDOR_KEY", KEY)
    r = invoke("credentials", "set", "from-env", "--from-env", "MY_VENDOR_KEY")
    assert r.exit_code == 0, r.stderr
    assert KEY not in r.stdout
    assert vault.get("from-env").reveal() == KEY


@pytest.mark.parametrize("var_value", [None, ""])
def test_set_from_unset_env_is_an_error(
    vault: Vault, monkeypatch: pytest.MonkeyPatch, var_value: str | None
) -> None:
    if var_value is None:
        monkeypatch.delenv("NOPE_KEY", raising=False)
    else:
        monkeypatch.setenv("NOPE_KEY", var_value)
    r = invoke("credentials", "set", "k", "--from-env", "NOPE_KEY")
    assert r.exit_code == 2
    assert "$NOPE_KEY is not set or empty" in one_error_line(r)
    assert vault.list() == []


@pytest.mark.parametrize("stdin", ["", "  \n", "two words\n", "line1\nline2\n"])
def test_set_rejects_empty_or_garbled_stdin(vault: Vault, stdin: str) -> None:
    r = invoke("credentials", "set", "k", input=stdin)
    assert r.exit_code == 2
    line = one_error_line(r)
    assert "words" not in line and "line1" not in line  # the input is never echoed
    assert vault.list() == []


def test_set_creates_the_vault_from_nothing(
    vault_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POLYROUTE_MASTER_KEY", PASS)
    assert not vault_dir.exists()
    r = invoke("credentials", "set", "fresh", input=KEY)
    assert r.exit_code == 0, r.stderr
    assert stat.S_IMODE(vault_dir.stat().st_mode) == 0o700
    assert Vault(vault_dir, PASS).get("fresh").reveal() == KEY


def test_list_without_a_vault_says_so_and_creates_nothing(vault_dir: Path) -> None:
    r = invoke("credentials", "list")
    assert r.exit_code == 0 and "no credentials" in r.stdout
    assert json.loads(invoke("credentials", "list", "--json").stdout) == {"credentials": []}
    assert not vault_dir.exists()


def test_list_empty_vault(vault: Vault) -> None:
    r = invoke("credentials", "list")
    assert r.exit_code == 0 and "no credentials in the vault" in r.stdout


def test_list_shows_which_providers_use_a_key(vault: Vault, tmp_path: Path) -> None:
    vault.set("shared", KEY)
    cfg = tmp_path / "p.toml"
    cfg.write_text(
        '[providers.a]\ntype = "openai"\napi_key = "vault:shared"\n'
        '[providers.b]\ntype = "mistral"\napi_key = "vault:shared"\n'
    )
    # --config before and after the subcommand
    for args in (
        ("credentials", "--config", str(cfg), "list"),
        ("credentials", "list", "--config", str(cfg)),
    ):
        r = invoke(*args)
        assert r.exit_code == 0, r.stderr
        assert "shared" in r.stdout and "a, b" in r.stdout


def test_delete(vault: Vault) -> None:
    vault.set("gone", KEY)
    vault.set("kept", KEY)
    r = invoke("credentials", "delete", "gone")
    assert r.exit_code == 0 and "deleted credential 'gone'" in r.stdout
    assert vault.list() == ["kept"]
    again = invoke("credentials", "delete", "gone")
    assert again.exit_code == 2 and "no credential 'gone'" in one_error_line(again)


def test_delete_warns_when_a_provider_still_uses_it(vault: Vault, tmp_path: Path) -> None:
    vault.set("used", KEY)
    cfg = tmp_path / "p.toml"
    cfg.write_text('[providers.a]\ntype = "openai"\napi_key = "vault:used"\n')
    r = invoke("--config", str(cfg), "credentials", "delete", "used")
    assert r.exit_code == 0 and "still used by a" in r.stderr


# -- rotate ----------------------------------------------------------------------


def test_rotate(vault: Vault, monkeypatch: pytest.MonkeyPatch) -> None:
    vault.set("k", KEY)
    vault.set("other", "other-value")
    monkeypatch.setenv("POLYROUTE_NEW_MASTER_KEY", "a new passphrase")
    r = invoke("credentials", "rotate")
    assert r.exit_code == 0, r.stderr
    assert "re-encrypted 2 credentials" in r.stdout and "$POLYROUTE_MASTER_KEY" in r.stdout

    old = invoke("credentials", "list")  # still the old passphrase
    assert old.exit_code == 2 and "wrong master passphrase" in one_error_line(old)

    monkeypatch.setenv("POLYROUTE_MASTER_KEY", "a new passphrase")
    monkeypatch.delenv("POLYROUTE_NEW_MASTER_KEY")
    assert invoke("credentials", "list", "--json").exit_code == 0
    assert Vault(vault.directory, "a new passphrase").get("k").reveal() == KEY


def test_rotate_needs_a_new_different_passphrase(
    vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    vault.set("k", KEY)
    monkeypatch.delenv("POLYROUTE_NEW_MASTER_KEY", raising=False)
    r = invoke("credentials", "rotate")
    assert r.exit_code == 2 and "$POLYROUTE_NEW_MASTER_KEY" in one_error_line(r)
    monkeypatch.setenv("POLYROUTE_NEW_MASTER_KEY", PASS)
    same = invoke("credentials", "rotate")
    assert same.exit_code == 2 and "current passphrase" in one_error_line(same)
    assert vault.get("k").reveal() == KEY  # untouched


@pytest.mark.parametrize("failing", ["replace", "fsync", "mkdir"])
def test_rotate_failing_is_one_line_and_changes_nothing(
    vault: Vault, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    vault.set("k", KEY)
    monkeypatch.setenv("POLYROUTE_NEW_MASTER_KEY", "a new passphrase")

    def full(*_: object, **__: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(os, failing, full)
        r = invoke("credentials", "rotate")
    assert r.exit_code == 1, r.stderr
    line = one_error_line(r)
    assert "No space left on device" in line and "nothing changed" in line
    assert "$POLYROUTE_MASTER_KEY" in line and r.stdout == ""
    assert Vault(vault.directory, PASS).get("k").reveal() == KEY


@pytest.mark.parametrize("args", [("set", "k"), ("delete", "k")])
def test_a_disk_refusing_writes_is_one_line(
    vault: Vault, monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...]
) -> None:
    vault.set("k", KEY)

    def read_only(*_: object, **__: object) -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    with monkeypatch.context() as m:
        m.setattr(os, "replace", read_only)
        m.setattr(os, "unlink", read_only)
        r = invoke("credentials", *args, input="another-value")
    assert r.exit_code == 1
    assert "cannot write to the vault" in one_error_line(r) and "Read-only" in r.stderr
    assert vault.get("k").reveal() == KEY


def test_tampered_vault_metadata_is_one_line(vault: Vault) -> None:
    vault.set("k", KEY)
    meta_path = vault.directory / "vault.json"
    meta = json.loads(meta_path.read_text())
    meta["kdf"]["n"] = 2**40
    meta_path.write_text(json.dumps(meta))
    for args in (("list",), ("rotate",), ("set", "k")):
        r = invoke("credentials", *args, input="new-value")
        assert r.exit_code == 2, args
        assert "damaged vault metadata: kdf.n" in one_error_line(r)


def test_rotate_without_a_vault(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLYROUTE_MASTER_KEY", PASS)
    monkeypatch.setenv("POLYROUTE_NEW_MASTER_KEY", "new")
    r = invoke("credentials", "rotate")
    assert r.exit_code == 2 and "no vault in" in one_error_line(r)


# -- passphrase and id failures --------------------------------------------------


def test_wrong_passphrase(vault: Vault, monkeypatch: pytest.MonkeyPatch) -> None:
    vault.set("k", KEY)
    monkeypatch.setenv("POLYROUTE_MASTER_KEY", "not the passphrase")
    for args in (("list",), ("delete", "k"), ("set", "k")):
        r = invoke("credentials", *args, input="new-value")
        assert r.exit_code == 2, args
        assert "wrong master passphrase" in one_error_line(r)
    assert vault.get("k").reveal() == KEY


def test_missing_master_key(vault: Vault, monkeypatch: pytest.MonkeyPatch) -> None:
    vault.set("k", KEY)
    monkeypatch.delenv("POLYROUTE_MASTER_KEY")
    for args in (("list",), ("delete", "k"), ("set", "k"), ("rotate",)):
        r = invoke("credentials", *args, input="new-value")
        assert r.exit_code == 2, args
        assert "$POLYROUTE_MASTER_KEY" in one_error_line(r)


def test_missing_master_key_for_a_new_vault(vault_dir: Path) -> None:
    r = invoke("credentials", "set", "k", input=KEY)
    assert r.exit_code == 2 and "$POLYROUTE_MASTER_KEY" in one_error_line(r)
    assert not vault_dir.exists()


@pytest.mark.parametrize("bad", ["../etc", "a/b", ".hidden", "x" * 65])
def test_bad_id(vault: Vault, bad: str) -> None:
    r = invoke("credentials", "set", bad, input=KEY)
    assert r.exit_code == 2 and "bad credential id" in one_error_line(r)
    assert vault.list() == []


@pytest.mark.parametrize("bad", ["vault:", "vault:../x", "vault:a b", "vault:-x"])
def test_bad_vault_id_in_config(tmp_path: Path, bad: str) -> None:
    cfg = tmp_path / "p.toml"
    cfg.write_text(f'[providers.x]\ntype = "openai"\napi_key = "{bad}"\n')
    with pytest.raises(ConfigError, match=r"providers\.x\.api_key: bad vault credential id"):
        load(cfg)


def test_raw_key_in_config_is_refused_without_echoing_it(tmp_path: Path) -> None:
    cfg = tmp_path / "p.toml"
    cfg.write_text(f'[providers.x]\ntype = "openai"\napi_key = "{KEY}"\n')
    with pytest.raises(ConfigError, match="'env:NAME' or 'vault:ID'") as info:
        load(cfg)
    assert KEY not in str(info.value)


# -- end to end: a provider whose key is in the vault ----------------------------


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    with Fleet(("openai",), reply="answered with a vault key", key=KEY) as f:
        yield f


@pytest.fixture
def vault_config(fleet: Fleet, tmp_path: Path) -> Iterator[Path]:
    text = fleet.toml()
    assert SIM_ENV_LINE in text
    path = tmp_path / "polyroute.toml"
    path.write_text(text.replace(SIM_ENV_LINE, 'api_key = "vault:sim"'))
    yield path
    fleet["openai"].script.recover()


def ask(config: Path) -> Result:
    return invoke("ask", "hi", "--provider", "openai", "--json", "--config", str(config))


def test_ask_uses_the_vault_key(fleet: Fleet, vault: Vault, vault_config: Path) -> None:
    vault.set("sim", KEY)
    r = ask(vault_config)
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["content"] == "answered with a vault key"
    assert fleet["openai"].last_request().headers["authorization"] == f"Bearer {KEY}"


def test_key_set_through_the_cli_reaches_the_provider(
    fleet: Fleet, vault: Vault, vault_config: Path
) -> None:
    assert invoke("credentials", "set", "sim", input=KEY + "\n").exit_code == 0
    assert ask(vault_config).exit_code == 0
    assert fleet["openai"].last_request().headers["authorization"] == f"Bearer {KEY}"


def test_missing_vault_credential_is_one_line_exit_2(vault: Vault, vault_config: Path) -> None:
    vault.set("another", KEY)
    r = ask(vault_config)
    assert r.exit_code == 2
    line = one_error_line(r)
    assert "providers.openai.api_key: vault credential 'sim' not found" in line
    assert "run `polyroute credentials set sim`" in line


def test_no_vault_at_all_is_the_same_clear_error(
    vault_dir: Path, vault_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POLYROUTE_MASTER_KEY", PASS)
    r = ask(vault_config)
    assert r.exit_code == 2 and "vault credential 'sim' not found" in one_error_line(r)
    assert not vault_dir.exists()  # reading never creates a vault


def test_locked_vault(vault: Vault, vault_config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    vault.set("sim", KEY)
    monkeypatch.delenv("POLYROUTE_MASTER_KEY")
    r = ask(vault_config)
    assert r.exit_code == 2
    line = one_error_line(r)
    assert "providers.openai.api_key" in line and "set $POLYROUTE_MASTER_KEY" in line


def test_wrong_passphrase_at_ask(
    vault: Vault, vault_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    vault.set("sim", KEY)
    monkeypatch.setenv("POLYROUTE_MASTER_KEY", "wrong")
    r = ask(vault_config)
    assert r.exit_code == 2
    line = one_error_line(r)
    assert "providers.openai.api_key" in line and "wrong master passphrase" in line


def test_wrong_passphrase_is_its_own_class(
    vault: Vault, vault_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    vault.set("sim", KEY)
    monkeypatch.setenv("POLYROUTE_MASTER_KEY", "wrong")
    config = load(vault_config)
    with pytest.raises(WrongPassphraseError, match=r"providers\.openai\.api_key"):
        config.provider("openai")
    assert config.key_status("openai") == "error (wrong master passphrase)"


def test_flipped_byte_is_a_clear_tamper_error(vault: Vault, vault_config: Path) -> None:
    vault.set("sim", KEY)
    f = vault.path("sim")
    data = bytearray(f.read_bytes())
    data[20] ^= 0x01
    f.write_bytes(bytes(data))
    r = ask(vault_config)
    assert r.exit_code == 2
    line = one_error_line(r)
    assert "vault credential 'sim' is tampered" in line and "credentials set sim" in line
    assert KEY not in r.stdout + r.stderr


# -- key status ------------------------------------------------------------------


def tamper(vault: Vault) -> None:
    f = vault.path("sim")
    data = f.read_bytes()
    f.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # always a change (a 0 byte could stay 0)


@pytest.mark.parametrize(
    ("setup", "status"),
    [
        ("ok", "set (vault)"),
        ("missing", "missing (no credential 'sim' in the vault)"),
        ("locked", "locked ($POLYROUTE_MASTER_KEY is not set)"),
        ("wrong", "error (wrong master passphrase)"),
        ("tampered", "error (tampered or corrupt credential)"),
    ],
)
def test_key_status_in_providers(
    vault: Vault,
    vault_config: Path,
    monkeypatch: pytest.MonkeyPatch,
    setup: str,
    status: str,
) -> None:
    if setup != "missing":
        vault.set("sim", KEY)
    if setup == "locked":
        monkeypatch.delenv("POLYROUTE_MASTER_KEY")
    elif setup == "wrong":
        monkeypatch.setenv("POLYROUTE_MASTER_KEY", "wrong")
    elif setup == "tampered":
        tamper(vault)
    r = invoke("providers", "--json", "--config", str(vault_config))
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["providers"][0]["key"] == status
    assert status in invoke("providers", "--config", str(vault_config)).stdout
    assert load(vault_config).key_status("openai") == status


def test_env_key_status_unchanged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "p.toml"
    cfg.write_text('[providers.x]\ntype = "openai"\napi_key = "env:SOME_KEY"\n')
    assert load(cfg).key_status("x") == "missing ($SOME_KEY is not set)"
    monkeypatch.setenv("SOME_KEY", KEY)
    assert load(cfg).key_status("x") == "set"


def test_the_vault_is_unlocked_once_per_config(
    vault: Vault, vault_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import polyroute.config

    vault.set("sim", KEY)
    opened: list[Path] = []
    real = polyroute.config.vault_for

    def counting(directory: Path, env: Mapping[str, str]) -> Vault:
        opened.append(directory)
        return real(directory, env)

    monkeypatch.setattr(polyroute.config, "vault_for", counting)
    config = load(vault_config)
    for _ in range(3):
        key = config.provider("openai").api_key
        assert key is not None and key.reveal() == KEY
    assert config.key_status("openai") == "set (vault)"
    assert opened == [vault.directory]
    assert load(vault_config).provider("openai").api_key is not None
    assert len(opened) == 2  # a new config unlocks again: no module-level cache
    assert "Vault" not in repr(config)
    assert config == load(vault_config)  # the cache takes no part in equality


def test_credentials_dir_from_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLYROUTE_MASTER_KEY", PASS)
    elsewhere = tmp_path / "elsewhere"
    Vault(elsewhere, PASS, kdf=FAST).set("sim", KEY)
    cfg = tmp_path / "p.toml"
    cfg.write_text(
        f'[credentials]\ndir = "{elsewhere}"\n'
        '[providers.x]\ntype = "openai"\napi_key = "vault:sim"\n'
    )
    config = load(cfg)
    assert config.vault_dir() == elsewhere
    key = config.provider("x").api_key
    assert key is not None and key.reveal() == KEY
    r = invoke("credentials", "list", "--json", "--config", str(cfg))
    assert json.loads(r.stdout) == {"credentials": [{"id": "sim"}]}
