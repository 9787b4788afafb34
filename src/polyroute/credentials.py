"""The credential vault: API keys encrypted at rest.

AES-256-GCM, key derived by scrypt from the master passphrase
(``$POLYROUTE_MASTER_KEY``) and a random per-vault salt. Layout, in a 0700
directory: ``vault.json`` (KDF parameters, salt, and a verifier: a known
text encrypted under the key, which tells a wrong passphrase apart from a
tampered entry) and one ``<id>.cred`` file (0600) per credential. Each
ciphertext is bound to its id as associated data, so swapping files fails.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from polyroute.errors import CredentialError
from polyroute.providers import Secret

_VERIFIER = b"polyroute-vault-v1"
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True, slots=True)
class KdfParams:
    """scrypt cost: n=2**15, r=8 (about 32 MiB, tens of ms); tests may lower it."""

    n: int = 2**15
    r: int = 8
    p: int = 1


class Vault:
    """Encrypted credentials in ``directory``, unlocked by ``passphrase``."""

    def __init__(self, directory: Path, passphrase: str, *, kdf: KdfParams | None = None) -> None:
        if not passphrase:
            raise CredentialError("no master passphrase: set $POLYROUTE_MASTER_KEY")
        self.directory = directory
        self._kdf = kdf or KdfParams()
        self._key = self._unlock(passphrase)

    def __repr__(self) -> str:
        return f"Vault({str(self.directory)!r})"

    # -- public ------------------------------------------------------------

    def set(self, cred_id: str, value: str) -> None:
        check_id(cred_id)
        if not value:
            raise CredentialError(f"credential {cred_id!r}: the value is empty")
        self._write(self._path(cred_id), self._seal(cred_id, value.encode()))

    def get(self, cred_id: str) -> Secret:
        check_id(cred_id)
        path = self._path(cred_id)
        if not path.is_file():
            raise CredentialError(f"no credential {cred_id!r} in {self.directory}")
        return Secret(self._open(cred_id, path.read_bytes()).decode())

    def delete(self, cred_id: str) -> None:
        check_id(cred_id)
        path = self._path(cred_id)
        if not path.is_file():
            raise CredentialError(f"no credential {cred_id!r} in {self.directory}")
        path.unlink()

    def list(self) -> list[str]:
        return sorted(p.stem for p in self.directory.glob("*.cred"))

    def rotate(self, new_passphrase: str) -> None:
        """Re-encrypt everything under ``new_passphrase`` with a fresh salt."""
        if not new_passphrase:
            raise CredentialError("no new passphrase: set $POLYROUTE_NEW_MASTER_KEY")
        plain = {cid: self.get(cid).reveal() for cid in self.list()}  # fails before any write
        salt = secrets.token_bytes(16)
        key = _derive(new_passphrase, salt, self._kdf)
        sealed = {cid: _seal(key, cid, v.encode()) for cid, v in plain.items()}
        for cid, blob in sealed.items():
            self._write(self._path(cid), blob)
        self._write_meta(salt, key)
        self._key = key

    # -- internals ---------------------------------------------------------

    def _path(self, cred_id: str) -> Path:
        return self.directory / f"{cred_id}.cred"

    def _unlock(self, passphrase: str) -> bytes:
        meta_path = self.directory / "vault.json"
        if not meta_path.exists():
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(self.directory, 0o700)
            salt = secrets.token_bytes(16)
            key = _derive(passphrase, salt, self._kdf)
            self._write_meta(salt, key)
            return key
        try:
            meta = json.loads(meta_path.read_text("utf-8"))
            salt = base64.b64decode(meta["salt"])
            self._kdf = KdfParams(**meta["kdf"])
            verifier = base64.b64decode(meta["verifier"])
        except (ValueError, KeyError, TypeError) as exc:
            raise CredentialError(f"{meta_path}: damaged vault metadata ({exc})") from None
        key = _derive(passphrase, salt, self._kdf)
        try:
            _open(key, "vault", verifier)
        except CredentialError:
            raise CredentialError(
                f"wrong master passphrase for the vault in {self.directory}"
            ) from None
        return key

    def _write_meta(self, salt: bytes, key: bytes) -> None:
        meta = {
            "version": 1,
            "kdf": {"n": self._kdf.n, "r": self._kdf.r, "p": self._kdf.p},
            "salt": base64.b64encode(salt).decode(),
            "verifier": base64.b64encode(_seal(key, "vault", _VERIFIER)).decode(),
        }
        self._write(self.directory / "vault.json", json.dumps(meta).encode())

    def _seal(self, cred_id: str, plain: bytes) -> bytes:
        return _seal(self._key, cred_id, plain)

    def _open(self, cred_id: str, blob: bytes) -> bytes:
        try:
            return _open(self._key, cred_id, blob)
        except CredentialError:
            raise CredentialError(
                f"credential {cred_id!r} is tampered or corrupt; set it again"
            ) from None

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        """Atomic write, 0600 from the first byte."""
        tmp = path.with_suffix(path.suffix + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)


def valid_id(cred_id: str) -> bool:
    """Letters, digits, ``_``, ``-``, ``.``; at most 64; not starting with punctuation."""
    return _ID.match(cred_id) is not None


def check_id(cred_id: str) -> None:
    if not valid_id(cred_id):
        raise CredentialError(
            f"bad credential id {cred_id!r}: letters, digits, '_', '-', '.' (at most 64)"
        )


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
