"""The deployment's tenant-archive signing keys (Ed25519), and checking a signature.

``tenant export`` signs each archive's manifest (and through the manifest's sha256 of
every file, the whole archive) with this deployment's current key; ``tenant import``
accepts an archive only when its signature verifies under a key it trusts: a key this
deployment signs or signed with (rotated keys keep verifying), or one the operator names
(``--trust-key``: the other deployment's ``platformdb tenant keys show``).

Layout, under ``$PLATFORMDB_HOME/tenant-keys/`` (folder 0700, files 0600)::

    signing.key          the current private key (PKCS#8 PEM), created on first use
    public/<id>.pub      the public key (hex) of every key this deployment signed with

A key's id is the first 16 hex digits of the sha256 of its raw 32-byte public key.
Rotation writes a new ``signing.key`` and keeps the old key's public half only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import stat
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from platformdb.errors import ConfigError, Hint, ValidationError

FOLDER = "tenant-keys"
SIGNING = "signing.key"
PUBLIC = "public"
ALGORITHM = "ed25519"
_HEX = re.compile(r"\b[0-9a-fA-F]{64}\b")


def key_id(public: bytes) -> str:
    return hashlib.sha256(public).hexdigest()[:16]


def raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@dataclass(frozen=True)
class PublicKey:
    """A public key as it is shown and handed over: its id and 64 hex digits."""

    raw: bytes

    @property
    def id(self) -> str:
        return key_id(self.raw)

    @property
    def hex(self) -> str:
        return self.raw.hex()

    def verifier(self) -> Ed25519PublicKey:
        return Ed25519PublicKey.from_public_bytes(self.raw)


@dataclass(frozen=True)
class KeyRing:
    """The signing keys of one deployment, in ``folder`` (``$PLATFORMDB_HOME/tenant-keys``)."""

    folder: Path

    @classmethod
    def of_home(cls, home: Path) -> KeyRing:
        return cls(home / FOLDER)

    # ------------------------------------------------------------ reading

    def current(self) -> tuple[Ed25519PrivateKey, PublicKey]:
        """The signing key, created on first use (owner-only)."""
        path = self.folder / SIGNING
        if not path.exists():
            self._create()
        _owner_only(path)
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{path} is not a PEM Ed25519 private key ({exc}); restore it "
                              "from a backup or move it away to create a new one") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigError(f"{path} is not an Ed25519 key")
        public = PublicKey(raw_public(key.public_key()))
        self._remember(public)
        return key, public

    def known(self) -> list[PublicKey]:
        """Every key this deployment signs or signed with (the current one included)."""
        found = []
        folder = self.folder / PUBLIC
        if folder.is_dir():
            for path in sorted(folder.glob("*.pub")):
                with contextlib.suppress(ValidationError):
                    found.append(parse_public(path.read_text(), path.name))
        return found

    # ------------------------------------------------------------ writing

    def rotate(self) -> tuple[PublicKey, PublicKey | None]:
        """A new signing key; the old one's public half keeps verifying. (new, old)."""
        old = self.current()[1] if (self.folder / SIGNING).exists() else None
        key = Ed25519PrivateKey.generate()
        public = PublicKey(raw_public(key.public_key()))
        self._remember(public)
        self._write(SIGNING, _pem(key), replace=True)
        return public, old

    def _create(self) -> None:
        key = Ed25519PrivateKey.generate()
        self._remember(PublicKey(raw_public(key.public_key())))
        with contextlib.suppress(FileExistsError):  # another process created it meanwhile
            self._write(SIGNING, _pem(key), replace=False)

    def _remember(self, public: PublicKey) -> None:
        name = f"{PUBLIC}/{public.id}.pub"
        if not (self.folder / name).exists():
            with contextlib.suppress(FileExistsError):
                self._write(name, f"{public.hex}\n".encode(), replace=False)

    def _write(self, name: str, data: bytes, *, replace: bool) -> None:
        path = self.folder / name
        for folder in (self.folder, path.parent):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(folder, 0o700)
        fd, partial = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            if replace:
                os.replace(partial, path)
            else:
                os.link(partial, path)  # FileExistsError: never replace a key
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(partial)


def _pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _owner_only(path: Path) -> None:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"{path} is readable by others (mode {stat.S_IMODE(mode):o}); "
                          f"make it owner-only: chmod 600 {path}")


def parse_public(text: str, what: str) -> PublicKey:
    """A public key from 64 hex digits (``tenant keys show``) or a PEM public key."""
    stripped = text.strip()
    if stripped.startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(stripped.encode())
        except ValueError as exc:
            raise ValidationError(f"{what} is not a readable PEM public key ({exc})") from exc
        if not isinstance(key, Ed25519PublicKey):
            raise ValidationError(f"{what} is not an Ed25519 public key")
        return PublicKey(raw_public(key))
    found = _HEX.search(stripped)
    if found is None:
        raise ValidationError(f"{what} holds no Ed25519 public key (64 hex digits, as "
                              "`platformdb tenant keys show` prints, or a PEM public key)")
    return PublicKey(bytes.fromhex(found.group(0)))


def trusted_key(value: str) -> PublicKey:
    """``--trust-key``: 64 hex digits, or a file holding them (or a PEM public key)."""
    if _HEX.fullmatch(value.strip()):
        return PublicKey(bytes.fromhex(value.strip()))
    path = Path(value).expanduser()
    if not path.is_file():
        raise ValidationError(f"--trust-key {value!r} is neither 64 hex digits nor a file")
    return parse_public(path.read_text(errors="replace")[:65536], str(path))


# ------------------------------------------------------------------ signatures


def sign(key: Ed25519PrivateKey, public: PublicKey, message: bytes) -> bytes:
    """The signature document of ``message`` (the manifest's exact bytes)."""
    return (json.dumps({"algorithm": ALGORITHM, "key_id": public.id, "public_key": public.hex,
                        "signature": key.sign(message).hex()}, indent=2, sort_keys=True)
            + "\n").encode()


def verify(what: str, message: bytes, document: bytes, trusted: Iterable[PublicKey]
           ) -> PublicKey:
    """The trusted key that signed ``message``; else one-line refusal naming why."""
    try:
        raw = json.loads(document)
        algorithm, signer = str(raw["algorithm"]), str(raw["public_key"])
        signature = bytes.fromhex(str(raw["signature"]))
        public = PublicKey(bytes.fromhex(signer))
        if algorithm != ALGORITHM or len(public.raw) != 32:
            raise ValueError(f"algorithm {algorithm!r}")
    except (ValueError, TypeError, KeyError) as exc:
        raise ValidationError(f"{what}: its signature is malformed ({exc}); refusing to "
                              "import") from exc
    if public.raw not in {key.raw for key in trusted}:
        raise ValidationError(
            f"{what} is signed by key {public.id}, which this deployment does not trust; "
            "nothing was imported",
            hint=Hint(flag="--trust-key HEX|FILE",
                      does="to name the exporting deployment's public key (its `platformdb "
                           "tenant keys show`) once you have checked it"))
    try:
        public.verifier().verify(signature, message)
    except InvalidSignature as exc:
        raise ValidationError(f"{what}: the manifest does not match its signature (changed "
                              "after it was signed); refusing to import") from exc
    return public
