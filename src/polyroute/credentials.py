"""The credential vault: API keys encrypted at rest.

AES-256-GCM, key derived by scrypt from the master passphrase
(``$POLYROUTE_MASTER_KEY``) and a random per-vault salt. Layout, in a 0700
directory::

    vault.json          KDF parameters, salt, a verifier (a known text encrypted
                        under the key: it tells a wrong passphrase apart from a
                        tampered entry) and the current generation
    gen-<hex>/<id>.cred one file (0600) per credential, in a 0700 directory
    .lock               writers take it (flock), readers never do

Each ciphertext is bound to its id as associated data, so swapping files fails.

Rotation is crash-safe: the new generation is written and fsynced beside the
old one, then one ``os.replace`` of ``vault.json`` switches to it, then the old
generation is removed. Interrupted anywhere, ``vault.json`` names a complete
generation under its own passphrase: the old one before the switch, the new one
after. What an interruption leaves is swept by the next write. Version-1
vaults (``<id>.cred`` beside ``vault.json``) still open; their first rotation
moves them to a generation directory.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import re
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polyroute.errors import CredentialError, WrongPassphraseError
from polyroute.providers import Secret

_VERIFIER = b"polyroute-vault-v1"
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_GEN = re.compile(r"^gen-[0-9a-f]{16}$")
_LEGACY = "."
"""The generation of a version-1 vault: its files sit beside ``vault.json``."""
_META = "vault.json"
_LOCK = ".lock"

# Bounds for KDF parameters read from vault.json, checked before scrypt runs so
# that tampered metadata cannot ask for gigabytes. What we write (n=2**15, r=8,
# p=1: 32 MiB) is well inside.
_MAX_N = 2**20
_MAX_R = 32
_MAX_P = 16
_MAX_SCRYPT_BYTES = 256 * 2**20  # scrypt's memory is 128 * n * r bytes


@dataclass(frozen=True, slots=True)
class KdfParams:
    """scrypt cost: n=2**15, r=8 (about 32 MiB, tens of ms); tests may lower it."""

    n: int = 2**15
    r: int = 8
    p: int = 1

    @classmethod
    def parse(cls, raw: object) -> KdfParams:
        """Parameters as read from metadata; a :class:`ValueError` says which one is off."""
        if not isinstance(raw, dict) or set(raw) != {"n", "r", "p"}:
            raise TypeError("kdf must be an object with exactly n, r and p")
        return cls(n=raw["n"], r=raw["r"], p=raw["p"]).checked()

    def checked(self) -> KdfParams:
        for name, value, low, high in (
            ("n", self.n, 2, _MAX_N),
            ("r", self.r, 1, _MAX_R),
            ("p", self.p, 1, _MAX_P),
        ):
            if type(value) is not int or not low <= value <= high:
                raise ValueError(
                    f"kdf.{name} must be an integer from {low} to {high}, not {value!r}"
                )
        if self.n & (self.n - 1):
            raise ValueError(f"kdf.n must be a power of two, not {self.n}")
        if 128 * self.n * self.r > _MAX_SCRYPT_BYTES:
            raise ValueError(f"kdf.n * kdf.r ({self.n} * {self.r}) needs more than 256 MiB")
        return self


@dataclass(frozen=True, slots=True)
class _Meta:
    kdf: KdfParams
    salt: bytes
    verifier: bytes
    generation: str

    @classmethod
    def read(cls, path: Path) -> _Meta:
        """``vault.json``, every field checked: damage is a clear error, never a traceback."""
        try:
            return cls.parse(json.loads(path.read_bytes()))
        except (ValueError, TypeError, UnicodeDecodeError, RecursionError) as exc:
            raise CredentialError(f"{path}: damaged vault metadata: {exc}") from None

    @classmethod
    def parse(cls, raw: object) -> _Meta:
        if not isinstance(raw, dict):
            raise TypeError("not a JSON object")
        version = raw.get("version")
        if type(version) is not int or version not in (1, 2):
            raise ValueError(f"unknown version {version!r}")
        generation = _LEGACY if version == 1 else raw.get("generation")
        if generation != _LEGACY and not (isinstance(generation, str) and _GEN.match(generation)):
            raise ValueError(f"bad generation {generation!r}")
        return cls(
            kdf=KdfParams.parse(raw.get("kdf")),
            salt=_b64(raw, "salt", 16, 64),
            verifier=_b64(raw, "verifier", 28, 256),
            generation=generation,
        )

    def dump(self) -> bytes:
        return json.dumps(
            {
                "version": 2,
                "kdf": {"n": self.kdf.n, "r": self.kdf.r, "p": self.kdf.p},
                "salt": base64.b64encode(self.salt).decode(),
                "verifier": base64.b64encode(self.verifier).decode(),
                "generation": self.generation,
            }
        ).encode()


def _b64(raw: dict[str, Any], name: str, least: int, most: int) -> bytes:
    value = raw.get(name)
    if not isinstance(value, str):
        raise TypeError(f"{name} is missing or not a string")
    try:
        data = base64.b64decode(value, validate=True)
    except binascii.Error:
        raise ValueError(f"{name} is not base64") from None
    if not least <= len(data) <= most:
        raise ValueError(f"{name} has {len(data)} bytes (expected {least} to {most})")
    return data


class Vault:
    """Encrypted credentials in ``directory``, unlocked by ``passphrase``."""

    def __init__(self, directory: Path, passphrase: str, *, kdf: KdfParams | None = None) -> None:
        if not passphrase:
            raise CredentialError("no master passphrase: set $POLYROUTE_MASTER_KEY")
        self.directory = directory
        try:
            self._kdf = (kdf or KdfParams()).checked()
        except ValueError as exc:
            raise CredentialError(f"bad vault parameters: {exc}") from None
        self._meta, self._key = self._unlock(passphrase)

    def __repr__(self) -> str:
        return f"Vault({str(self.directory)!r})"

    # -- public ------------------------------------------------------------

    def path(self, cred_id: str) -> Path:
        """The file that holds ``cred_id`` in the current generation."""
        check_id(cred_id)
        return self._generation_dir(self._meta.generation) / f"{cred_id}.cred"

    def set(self, cred_id: str, value: str) -> None:
        check_id(cred_id)
        if not value:
            raise CredentialError(f"credential {cred_id!r}: the value is empty")
        with self._writing():
            path = self.path(cred_id)
            tmp = path.with_name(path.name + ".tmp")
            _write_new(tmp, _seal(self._key, cred_id, value.encode()))
            os.replace(tmp, path)
            _fsync_dir(path.parent)

    def get(self, cred_id: str) -> Secret:
        path = self.path(cred_id)
        if not path.is_file():
            raise CredentialError(f"no credential {cred_id!r} in {self.directory}")
        return Secret(self._open(cred_id, path.read_bytes()).decode())

    def delete(self, cred_id: str) -> None:
        path = self.path(cred_id)
        with self._writing():
            if not path.is_file():
                raise CredentialError(f"no credential {cred_id!r} in {self.directory}")
            os.unlink(path)
            _fsync_dir(path.parent)

    def list(self) -> list[str]:
        return sorted(p.stem for p in self._generation_dir(self._meta.generation).glob("*.cred"))

    def rotate(self, new_passphrase: str) -> None:
        """Re-encrypt everything under ``new_passphrase`` with a fresh salt, crash-safely.

        An :class:`OSError` means the switch did not happen: the vault still
        opens with the current passphrase. Once it has happened, failing to
        remove the old generation is left to the next write's sweep.
        """
        if not new_passphrase:
            raise CredentialError("no new passphrase: set $POLYROUTE_NEW_MASTER_KEY")
        with self._writing():
            plain = {cid: self.get(cid).reveal() for cid in self.list()}  # fails before any write
            salt = secrets.token_bytes(16)
            key = _derive(new_passphrase, salt, self._kdf)
            meta = _Meta(self._kdf, salt, _seal(key, "vault", _VERIFIER), _new_generation())
            new_dir = self._generation_dir(meta.generation)
            try:
                os.mkdir(new_dir, 0o700)
                for cid, value in plain.items():
                    _write_new(new_dir / f"{cid}.cred", _seal(key, cid, value.encode()))
                _fsync_dir(new_dir)
                self._switch(meta)
            except OSError:
                with contextlib.suppress(OSError):  # else the next write sweeps it
                    _remove_generation(new_dir, legacy=False)
                raise
            old = self._meta.generation
            self._meta, self._key = meta, key
            with contextlib.suppress(OSError):  # switched: the next write sweeps what is left
                _fsync_dir(self.directory)
                _remove_generation(self._generation_dir(old), legacy=old == _LEGACY)
                _fsync_dir(self.directory)

    # -- internals ---------------------------------------------------------

    def _generation_dir(self, generation: str) -> Path:
        return self.directory if generation == _LEGACY else self.directory / generation

    def _unlock(self, passphrase: str) -> tuple[_Meta, bytes]:
        meta_path = self.directory / _META
        if not meta_path.exists():
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(self.directory, 0o700)
            with self._locked():
                if not meta_path.exists():  # no other process created it meanwhile
                    return self._create(passphrase)
        meta = _Meta.read(meta_path)
        key = _derive(passphrase, meta.salt, meta.kdf)
        self._kdf = meta.kdf
        try:
            _open(key, "vault", meta.verifier)
        except CredentialError:
            raise WrongPassphraseError(
                f"wrong master passphrase for the vault in {self.directory}"
            ) from None
        return meta, key

    def _create(self, passphrase: str) -> tuple[_Meta, bytes]:
        salt = secrets.token_bytes(16)
        key = _derive(passphrase, salt, self._kdf)
        meta = _Meta(self._kdf, salt, _seal(key, "vault", _VERIFIER), _new_generation())
        os.mkdir(self._generation_dir(meta.generation), 0o700)
        self._switch(meta)
        _fsync_dir(self.directory)
        return meta, key

    def _switch(self, meta: _Meta) -> None:
        """The one atomic step: ``vault.json`` names ``meta``'s generation."""
        path = self.directory / _META
        tmp = path.with_name(path.name + ".tmp")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        _write_new(tmp, meta.dump())
        os.replace(tmp, path)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        import fcntl

        fd = os.open(self.directory / _LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """Hold the lock, check that the vault is still the one unlocked, sweep leftovers."""
        with self._locked():
            current = _Meta.read(self.directory / _META)
            if (current.generation, current.salt) != (self._meta.generation, self._meta.salt):
                raise CredentialError(
                    f"the vault in {self.directory} was rotated since it was opened; "
                    "run the command again"
                )
            self._sweep()
            yield

    def _sweep(self) -> None:
        """Remove what an interrupted write or rotation left: other generations, temp files."""
        current = self._meta.generation
        for entry in self.directory.iterdir():
            if _GEN.match(entry.name) and entry.name != current:
                _remove_generation(entry, legacy=False)
            elif entry.name.endswith(".tmp") or (
                current != _LEGACY and entry.name.endswith(".cred")
            ):
                os.unlink(entry)
        if current != _LEGACY:
            for entry in self._generation_dir(current).glob("*.tmp"):
                os.unlink(entry)

    def _open(self, cred_id: str, blob: bytes) -> bytes:
        try:
            return _open(self._key, cred_id, blob)
        except CredentialError:
            raise CredentialError(
                f"credential {cred_id!r} is tampered or corrupt; set it again"
            ) from None


def valid_id(cred_id: str) -> bool:
    """Letters, digits, ``_``, ``-``, ``.``; at most 64; not starting with punctuation."""
    return _ID.match(cred_id) is not None


def check_id(cred_id: str) -> None:
    if not valid_id(cred_id):
        raise CredentialError(
            f"bad credential id {cred_id!r}: letters, digits, '_', '-', '.' (at most 64)"
        )


def _new_generation() -> str:
    return f"gen-{secrets.token_hex(8)}"


def _write_new(path: Path, data: bytes) -> None:
    """A new file, 0600 from the first byte, on disk when this returns."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    """Make a directory's entries (new, renamed, removed files) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_generation(path: Path, *, legacy: bool) -> None:
    """A generation's files; a version-1 vault's are the ``.cred`` files at the top level."""
    for entry in path.glob("*.cred") if legacy else path.iterdir():
        os.unlink(entry)
    if not legacy:
        os.rmdir(path)


def _derive(passphrase: str, salt: bytes, kdf: KdfParams) -> bytes:
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    return Scrypt(salt=salt, length=32, n=kdf.n, r=kdf.r, p=kdf.p).derive(passphrase.encode())


def _seal(key: bytes, aad: str, plain: bytes) -> bytes:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = secrets.token_bytes(12)
    return nonce + AESGCM(key).encrypt(nonce, plain, aad.encode())


def _open(key: bytes, aad: str, blob: bytes) -> bytes:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    try:
        return AESGCM(key).decrypt(blob[:12], blob[12:], aad.encode())
    except (InvalidTag, ValueError):
        raise CredentialError("decryption failed") from None


def vault_for(directory: Path, env: Mapping[str, str]) -> Vault:
    """The vault in ``directory``, unlocked with ``$POLYROUTE_MASTER_KEY`` from ``env``."""
    return Vault(directory, env.get("POLYROUTE_MASTER_KEY", ""))
