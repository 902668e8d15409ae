"""Passwords and tokens as the spec says.

Passwords
    bcrypt, cost :data:`DEFAULT_COST` (12) unless configured (at least
    :data:`MIN_COST`, 10, which the ``users.password_hash`` CHECK also
    demands). A password must follow three rules, each named in the
    :class:`ValidationError` that refuses it:

    - ``min-length``: at least 8 characters;
    - ``max-bytes``: at most 72 bytes in UTF-8 (bcrypt ignores the rest, so a
      longer password would be silently truncated);
    - ``complexity``: at least three of the four kinds of character:
      lower-case letter, upper-case letter, digit, anything else (symbols,
      spaces, letters without case).

    :func:`verify_password` compares in constant time, and spends the same
    bcrypt work when the user does not exist (pass ``None``), so the answer
    time does not tell which emails are registered. :func:`needs_rehash`
    says when a stored hash is weaker than the current cost; the login flow
    (:func:`authenticate`) stores a new hash then.

Tokens
    :func:`issue_token` creates a random token (256 bits), stores only its
    SHA-256 (hex) in ``auth_tokens`` and returns the token once.
    :func:`validate_token` hashes what a client presents and asks
    ``validate_auth_token(hash)``, which takes the hash, never the token.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

import bcrypt
import psycopg
from psycopg.types.json import Jsonb

from platformdb.errors import ValidationError
from platformdb.postgres import parse_org_id, tenant_transaction

DEFAULT_COST = 12
MIN_COST = 10
MAX_COST = 31
MIN_LENGTH = 8
MAX_BYTES = 72
MIN_KINDS = 3
TOKEN_BYTES = 32
TOKEN_TYPES = ("access", "refresh", "api_key", "password_reset", "email_verification")
_BCRYPT_RE = re.compile(r"^\$2([aby])\$(\d\d)\$[./A-Za-z0-9]{53}$")

__all__ = [
    "DEFAULT_COST",
    "MIN_COST",
    "IssuedToken",
    "TokenInfo",
    "authenticate",
    "hash_password",
    "hash_token",
    "issue_token",
    "needs_rehash",
    "password_problems",
    "revoke_token",
    "validate_password",
    "validate_token",
    "verify_password",
]


# ----------------------------------------------------------------- passwords


def password_problems(password: str) -> list[str]:
    """The rules ``password`` breaks, each as ``rule: what it asks``; empty if none."""
    problems = []
    if len(password) < MIN_LENGTH:
        problems.append(f"min-length: at least {MIN_LENGTH} characters")
    if len(password.encode()) > MAX_BYTES:
        problems.append(f"max-bytes: at most {MAX_BYTES} bytes in UTF-8 (bcrypt's limit)")
    kinds = {
        "lower" if c.islower() else "upper" if c.isupper() else "digit" if c.isdigit() else "other"
        for c in password
    }
    if len(kinds) < MIN_KINDS:
        problems.append(f"complexity: at least {MIN_KINDS} of lower-case letter, upper-case "
                        f"letter, digit, other character (it has {len(kinds)})")
    return problems


def validate_password(password: str) -> None:
    """A :class:`ValidationError` naming every rule ``password`` breaks."""
    problems = password_problems(password)
    if problems:
        raise ValidationError("password refused: " + "; ".join(problems))


def _check_cost(cost: int) -> int:
    if not MIN_COST <= cost <= MAX_COST:
        raise ValidationError(f"bcrypt cost must be between {MIN_COST} and {MAX_COST}, got {cost}")
    return cost


def hash_password(password: str, *, cost: int = DEFAULT_COST) -> str:
    """The bcrypt hash of a password that follows the rules."""
    validate_password(password)
    return _hash(password, _check_cost(cost))


def _hash(password: str, cost: int) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=cost)).decode()


@functools.lru_cache(maxsize=4)
def _dummy_hash(cost: int) -> bytes:
    # Verified against when the user does not exist, at the same cost as a real one.
    return bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(rounds=cost))


def hash_cost(password_hash: str) -> int | None:
    """The cost of a bcrypt hash, or ``None`` if it is not one."""
    match = _BCRYPT_RE.match(password_hash)
    return int(match.group(2)) if match else None


def verify_password(password: str, password_hash: str | None, *,
                    cost: int = DEFAULT_COST) -> bool:
    """Whether ``password`` matches ``password_hash``, in constant time.

    ``None`` (no such user), a malformed hash or an over-long password
    return ``False`` after the same bcrypt work as a real check.
    """
    secret = password.encode()
    stored = password_hash.encode() if password_hash and hash_cost(password_hash) else None
    if stored is None or len(secret) > MAX_BYTES:
        bcrypt.checkpw(secret[:MAX_BYTES], _dummy_hash(hash_cost(password_hash or "") or cost))
        return False
    return bcrypt.checkpw(secret, stored)


def needs_rehash(password_hash: str, *, cost: int = DEFAULT_COST) -> bool:
    """Whether a stored hash is weaker than ``cost`` (or not a current bcrypt hash)."""
    match = _BCRYPT_RE.match(password_hash)
    return match is None or match.group(1) != "b" or int(match.group(2)) < _check_cost(cost)


# -------------------------------------------------------------------- tokens


@dataclass(frozen=True)
class IssuedToken:
    """A token just issued: ``token`` is shown to its owner once and stored nowhere."""

    token: str
    token_hash: str
    token_id: uuid.UUID
    token_type: str
    expires_at: dt.datetime


@dataclass(frozen=True)
class TokenInfo:
    """What ``validate_auth_token`` says about a live token."""

    org_id: uuid.UUID
    user_id: uuid.UUID
    token_id: uuid.UUID
    token_type: str
    expires_at: dt.datetime


def hash_token(token: str) -> str:
    """The hex SHA-256 of a token, the only form ``auth_tokens`` stores."""
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(conn: psycopg.Connection[Any], org_id: str | uuid.UUID,
                user_id: str | uuid.UUID, token_type: str, ttl: dt.timedelta, *,
                created_ip: str | None = None, user_agent: str | None = None,
                role: str | None = None) -> IssuedToken:
    """Create a token for a user of ``org_id``; only its hash reaches the database.

    Runs in its own tenant transaction (``conn`` must be idle), as
    ``platform_app`` or ``platform_auth``.
    """
    if token_type not in TOKEN_TYPES:
        raise ValidationError(f"token type must be one of {', '.join(TOKEN_TYPES)}, "
                              f"got {token_type!r}")
    if ttl <= dt.timedelta(0):
        raise ValidationError("a token's time to live must be positive")
    token = secrets.token_urlsafe(TOKEN_BYTES)
    digest = hash_token(token)
    token_id = uuid.uuid4()
    with tenant_transaction(conn, org_id, role=role):
        row = conn.execute(
            "INSERT INTO auth_tokens (org_id, id, user_id, token_type, token_hash, expires_at,"
            " created_ip, user_agent) VALUES (%s, %s, %s, %s, %s, now() + %s, %s, %s)"
            " RETURNING expires_at",
            (parse_org_id(org_id), token_id, parse_org_id(user_id, "user_id"), token_type,
             digest, ttl, created_ip, user_agent)).fetchone()
    assert row is not None
    return IssuedToken(token, digest, token_id, token_type, row[0])


def validate_token(conn: psycopg.Connection[Any], token: str) -> TokenInfo | None:
    """The tenant, user and type of a live token (not revoked, not expired), else ``None``."""
    with conn.transaction():
        row = conn.execute("SELECT org_id, user_id, token_id, token_type, expires_at"
                           " FROM validate_auth_token(%s)", (hash_token(token),)).fetchone()
    return TokenInfo(*row) if row else None


def revoke_token(conn: psycopg.Connection[Any], org_id: str | uuid.UUID,
                 token_id: str | uuid.UUID, *, role: str | None = None) -> bool:
    """Revoke a token of ``org_id``; ``False`` if it was unknown or revoked already."""
    with tenant_transaction(conn, org_id, role=role):
        cur = conn.execute("UPDATE auth_tokens SET revoked_at = now()"
                           " WHERE org_id = %s AND id = %s AND revoked_at IS NULL",
                           (parse_org_id(org_id), parse_org_id(token_id, "token_id")))
    return cur.rowcount == 1


# --------------------------------------------------------------------- login


def authenticate(conn: psycopg.Connection[Any], org_id: str | uuid.UUID, email: str,
                 password: str, *, cost: int = DEFAULT_COST,
                 role: str | None = None) -> uuid.UUID | None:
    """The id of the active user of ``org_id`` with this email and password, else ``None``.

    Reads the hash through ``user_password_hash()`` (the login needs the
    ``platform_auth`` role), verifies it in this process, stores a stronger
    hash when :func:`needs_rehash` says so, and records ``LOGIN`` or
    ``LOGIN_FAILED`` in the audit trail. One tenant transaction.
    """
    _check_cost(cost)
    with tenant_transaction(conn, org_id, role=role):
        row = conn.execute("SELECT user_id, password_hash, status FROM user_password_hash(%s)",
                           (email,)).fetchone()
        matched = verify_password(password, row[1] if row else None, cost=cost)
        if row is None or not matched or row[2] != "active":
            conn.execute("SELECT log_audit_event('LOGIN_FAILED', 'users', %s, %s)",
                         (str(row[0]) if row else None, Jsonb({"email": email.lower()})))
            return None
        user_id: uuid.UUID = row[0]
        if needs_rehash(row[1], cost=cost):
            conn.execute("UPDATE users SET password_hash = %s, last_login_at = now()"
                         " WHERE org_id = %s AND id = %s",
                         (_hash(password, cost), parse_org_id(org_id), user_id))
        else:
            conn.execute("UPDATE users SET last_login_at = now() WHERE org_id = %s AND id = %s",
                         (parse_org_id(org_id), user_id))
        conn.execute("SELECT log_audit_event('LOGIN', 'users', %s)", (str(user_id),))
    return user_id
