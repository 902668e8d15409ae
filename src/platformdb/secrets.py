"""Secrets the platform stores for its tenants (DSP credentials), encrypted for real.

Envelope encryption with AES-256-GCM (``cryptography``):

- every value gets its own random 256-bit data key; the value is encrypted
  with the data key, and the data key is encrypted ("wrapped") with a
  key-encryption key (KEK) from configuration;
- the KEK's id travels with the ciphertext, so a value can be decrypted
  after the active key changed, and ``rotate`` finds what an old key wrote;
- both encryptions authenticate the header and a binding to where the value
  lives (its purpose, ``org_id`` and record id): a ciphertext copied to
  another tenant's or another connector's row does not decrypt.

Stored format (``dsp_connectors.credentials_encrypted``; a CHECK constraint
refuses anything else, clear text included)::

    b"PDBE" | version 1 | key-id length | key id (ASCII)
    | wrap nonce (12) | wrapped data key (32 + 16 tag)
    | nonce (12) | ciphertext | tag (16)

Keys come from configuration, ``PLATFORMDB_SECRET_KEYS`` by default:
``kid1:base64key,kid2:base64key`` (32-byte keys, standard base64); the
first is the active key that encrypts, the others only decrypt. Rotation:
put a new key first, keep the old ones, run ``platformdb secrets rotate``
(:func:`rotate_dsp_credentials`), then drop the old keys. There is no
default key: without configuration nothing encrypts or decrypts.

This is the only module that imports ``cryptography``.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from platformdb.errors import ConfigError, ValidationError
from platformdb.postgres import connect, parse_org_id, tenant_transaction

ENV_VAR = "PLATFORMDB_SECRET_KEYS"
MAGIC = b"PDBE"
VERSION = 1
KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
KEY_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
DSP_CREDENTIALS = "dsp_connectors.credentials"
DEFAULT_BATCH = 500

__all__ = [
    "DSP_CREDENTIALS",
    "ENV_VAR",
    "KeyRing",
    "RotationReport",
    "Sealed",
    "decrypt",
    "encrypt",
    "generate_key",
    "key_id_of",
    "read_dsp_credentials",
    "rotate_dsp_credentials",
    "store_dsp_credentials",
]


@dataclass(frozen=True)
class KeyRing:
    """Key-encryption keys by id; ``active_key_id`` encrypts, every key decrypts."""

    keys: Mapping[str, bytes]
    active_key_id: str

    def __post_init__(self) -> None:
        if self.active_key_id not in self.keys:
            raise ConfigError(f"active key {self.active_key_id!r} is not among the keys")
        for key_id, key in self.keys.items():
            if not KEY_ID_RE.match(key_id):
                raise ConfigError(f"secret key id {key_id!r} must be 1-64 letters, digits, '_', "
                                  "'.' or '-', starting with a letter or digit")
            if len(key) != KEY_BYTES:
                raise ConfigError(f"secret key {key_id!r} is {len(key)} bytes; AES-256 needs "
                                  f"{KEY_BYTES} (platformdb.secrets.generate_key makes one)")

    @classmethod
    def parse(cls, value: str, *, source: str = ENV_VAR) -> KeyRing:
        """``kid1:base64key,kid2:base64key``; the first key is the active one."""
        keys: dict[str, bytes] = {}
        for item in filter(None, (part.strip() for part in value.split(","))):
            key_id, sep, encoded = item.partition(":")
            if not sep:
                raise ConfigError(f"{source}: {key_id[:8]!r}... is not kid:base64key")
            if key_id in keys:
                raise ConfigError(f"{source}: key id {key_id!r} appears twice")
            try:
                keys[key_id] = base64.b64decode(encoded.strip(), validate=True)
            except (binascii.Error, ValueError) as exc:
                raise ConfigError(f"{source}: the key of {key_id!r} is not base64") from exc
        if not keys:
            raise ConfigError(f"{source} holds no key; set it to kid:base64key[,kid:base64key...]")
        return cls(keys, next(iter(keys)))

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> KeyRing:
        """The keys of ``PLATFORMDB_SECRET_KEYS``; a :class:`ConfigError` when unset."""
        value = (os.environ if environ is None else environ).get(ENV_VAR, "")
        if not value.strip():
            raise ConfigError(f"{ENV_VAR} is not set; it holds the keys that encrypt DSP "
                              "credentials (kid:base64key, first = active)")
        return cls.parse(value)

    def key(self, key_id: str) -> bytes:
        try:
            return self.keys[key_id]
        except KeyError:
            raise ConfigError(f"secret key {key_id!r} is not configured ({ENV_VAR}); "
                              "it is needed to decrypt this value") from None


@dataclass(frozen=True)
class Sealed:
    """A ciphertext and the id of the key that wrapped its data key."""

    ciphertext: bytes
    key_id: str


def generate_key() -> str:
    """A new random key-encryption key, base64, for ``PLATFORMDB_SECRET_KEYS``."""
    return base64.b64encode(AESGCM.generate_key(bit_length=KEY_BYTES * 8)).decode()


def _header(key_id: str) -> bytes:
    kid = key_id.encode("ascii")
    return MAGIC + bytes([VERSION, len(kid)]) + kid


def _aad(header: bytes, purpose: str, org_id: uuid.UUID, record_id: uuid.UUID) -> bytes:
    return header + purpose.encode() + b"\x00" + org_id.bytes + record_id.bytes


def encrypt(keyring: KeyRing, plaintext: bytes, *, org_id: str | uuid.UUID,
            record_id: str | uuid.UUID, purpose: str = DSP_CREDENTIALS) -> Sealed:
    """``plaintext`` sealed under a fresh data key wrapped by the active key."""
    org, record = parse_org_id(org_id), parse_org_id(record_id, "record_id")
    key_id = keyring.active_key_id
    header = _header(key_id)
    aad = _aad(header, purpose, org, record)
    data_key = AESGCM.generate_key(bit_length=KEY_BYTES * 8)
    wrap_nonce, nonce = os.urandom(NONCE_BYTES), os.urandom(NONCE_BYTES)
    wrapped = AESGCM(keyring.key(key_id)).encrypt(wrap_nonce, data_key, aad)
    body = AESGCM(data_key).encrypt(nonce, plaintext, aad)
    return Sealed(header + wrap_nonce + wrapped + nonce + body, key_id)


def key_id_of(ciphertext: bytes) -> str:
    """The id of the key that wrapped ``ciphertext``'s data key."""
    return _split(ciphertext)[0]


def _split(ciphertext: bytes) -> tuple[str, bytes, bytes, bytes, bytes, bytes]:
    """key id, header, wrap nonce, wrapped key, nonce, body; ValidationError if malformed."""
    blob = bytes(ciphertext)
    if len(blob) < 6 or blob[:4] != MAGIC:
        raise ValidationError("not a platformdb.secrets ciphertext (no PDBE header)")
    if blob[4] != VERSION:
        raise ValidationError(f"platformdb.secrets ciphertext version {blob[4]} is not supported")
    end = 6 + blob[5]
    wrapped_end = end + NONCE_BYTES + KEY_BYTES + TAG_BYTES
    if len(blob) < wrapped_end + NONCE_BYTES + TAG_BYTES:
        raise ValidationError("platformdb.secrets ciphertext is truncated")
    key_id = blob[6:end].decode("ascii", errors="replace")
    return (key_id, blob[:end], blob[end:end + NONCE_BYTES], blob[end + NONCE_BYTES:wrapped_end],
            blob[wrapped_end:wrapped_end + NONCE_BYTES], blob[wrapped_end + NONCE_BYTES:])


def decrypt(keyring: KeyRing, ciphertext: bytes, *, org_id: str | uuid.UUID,
            record_id: str | uuid.UUID, purpose: str = DSP_CREDENTIALS) -> bytes:
    """The plaintext of ``ciphertext``, if it was sealed for exactly this binding."""
    org, record = parse_org_id(org_id), parse_org_id(record_id, "record_id")
    key_id, header, wrap_nonce, wrapped, nonce, body = _split(ciphertext)
    aad = _aad(header, purpose, org, record)
    try:
        data_key = AESGCM(keyring.key(key_id)).decrypt(wrap_nonce, wrapped, aad)
        return AESGCM(data_key).decrypt(nonce, body, aad)
    except InvalidTag as exc:
        raise ValidationError(
            f"cannot decrypt the {purpose} of {org}/{record}: it was sealed for another "
            "record or tenant, or altered, or key " f"{key_id!r} is not the key that sealed it"
        ) from exc


# ------------------------------------------------------------- DSP credentials


def store_dsp_credentials(conn: psycopg.Connection[Any], keyring: KeyRing,
                          org_id: str | uuid.UUID, connector_id: str | uuid.UUID,
                          credentials: Mapping[str, Any], *, role: str | None = None) -> str:
    """Encrypt ``credentials`` (JSON) into the connector's row; returns the key id.

    Runs in its own tenant transaction (``conn`` must be idle), as a role
    that may update ``dsp_connectors`` (``platform_app``; ``role`` switches to
    it for the transaction).
    """
    sealed = encrypt(keyring, json.dumps(dict(credentials), sort_keys=True).encode(),
                     org_id=org_id, record_id=connector_id)
    with tenant_transaction(conn, org_id, role=role):
        cur = conn.execute(
            "UPDATE dsp_connectors SET credentials_encrypted = %s, credentials_key_id = %s"
            " WHERE org_id = %s AND id = %s",
            (sealed.ciphertext, sealed.key_id, parse_org_id(org_id),
             parse_org_id(connector_id, "connector_id")))
        if cur.rowcount != 1:
            raise ValidationError(f"no DSP connector {connector_id} in organization {org_id}")
    return sealed.key_id


def read_dsp_credentials(conn: psycopg.Connection[Any], keyring: KeyRing,
                         org_id: str | uuid.UUID, connector_id: str | uuid.UUID, *,
                         role: str | None = None) -> dict[str, Any] | None:
    """A connector's credentials, decrypted; ``None`` when it has none.

    Reads through ``dsp_connector_credentials()``, so the login needs the
    ``platform_connector`` role; runs in its own tenant transaction.
    """
    with tenant_transaction(conn, org_id, role=role):
        row = conn.execute("SELECT credentials_encrypted FROM dsp_connector_credentials(%s)",
                           (parse_org_id(connector_id, "connector_id"),)).fetchone()
    if row is None or row[0] is None:
        return None
    plain = decrypt(keyring, row[0], org_id=org_id, record_id=connector_id)
    value: dict[str, Any] = json.loads(plain)
    return value


@dataclass
class RotationReport:
    """What :func:`rotate_dsp_credentials` did (or would do, on a dry run)."""

    active_key_id: str
    rotated: int = 0
    batches: int = 0
    failed: list[str] = field(default_factory=list)
    dry_run: bool = False


ROTATE_BATCH = """
SELECT org_id, id, credentials_encrypted
  FROM public.dsp_connectors
 WHERE credentials_encrypted IS NOT NULL
   AND credentials_key_id IS DISTINCT FROM %(active)s
   AND (org_id, id) > (%(after_org)s, %(after_id)s)
 ORDER BY org_id, id
 LIMIT %(limit)s
   FOR UPDATE
"""
NIL = uuid.UUID(int=0)


def rotate_dsp_credentials(url: str, keyring: KeyRing, *, batch_size: int = DEFAULT_BATCH,
                           dry_run: bool = False) -> RotationReport:
    """Re-encrypt every DSP credential not under the active key, in batches.

    Each batch is one transaction (rows locked, decrypted with their own key,
    sealed again under the active key with a new data key), so a rotation can
    be interrupted and run again. A value that cannot be decrypted (its key is
    not configured, or it was altered) is left as it is and listed in
    ``failed``. Runs as a role that bypasses row-level security (the
    migration owner: a superuser or BYPASSRLS), as it rewrites every tenant's
    rows; every change is audited by the trigger, the values masked.
    """
    if batch_size < 1:
        raise ValidationError("batch size must be at least 1")
    report = RotationReport(keyring.active_key_id, dry_run=dry_run)
    after = (NIL, NIL)
    with connect(url) as conn:
        hidden = conn.execute("SELECT row_security_active('public.dsp_connectors')").fetchone()
        conn.rollback()
        if hidden is not None and hidden[0]:
            raise ConfigError("secrets rotate needs a role that bypasses row-level security "
                              "(the migration owner as superuser or BYPASSRLS): it rewrites the "
                              "credentials of every tenant")
        while True:
            with conn.transaction():
                rows = conn.execute(ROTATE_BATCH, {
                    "active": keyring.active_key_id, "after_org": after[0], "after_id": after[1],
                    "limit": batch_size}).fetchall()
                if not rows:
                    break
                after = (rows[-1][0], rows[-1][1])
                report.batches += 1
                updates = []
                for org, record, blob in rows:
                    try:
                        plain = decrypt(keyring, blob, org_id=org, record_id=record)
                    except (ConfigError, ValidationError) as exc:
                        report.failed.append(f"{org}/{record}: {exc}")
                        continue
                    sealed = encrypt(keyring, plain, org_id=org, record_id=record)
                    updates.append((sealed.ciphertext, sealed.key_id, org, record))
                if not dry_run and updates:
                    conn.cursor().executemany(
                        "UPDATE public.dsp_connectors SET credentials_encrypted = %s,"
                        " credentials_key_id = %s WHERE org_id = %s AND id = %s", updates)
                report.rotated += len(updates)
    return report
