"""What every seed shares: its report, the tenant tables it fills, the development key."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from psycopg import sql

from platformdb import secrets

TENANT_TABLES = ("organizations", "users", "user_roles", "auth_tokens", "dsp_connectors",
                 "campaigns", "campaign_metrics", "etl_jobs", "notifications", "audit_logs")
# The key that encrypts the seeds' DSP credentials when PLATFORMDB_SECRET_KEYS
# is not set (postgresql/seed/test_data.sql is encrypted with it too). It is
# public, for development data only: platformdb.secrets has no default key.
DEV_SECRET_KEYS = "dev-seed-2026:YtMLYZvmcZHqHEvIKLzX77Juwr3nuNZ7eS/zbZEoqDg="  # noqa: S105 - a public development key, documented as such


@dataclass
class SeedReport:
    dataset: str
    counts: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def seed_keyring(keys: str | None = None) -> secrets.KeyRing:
    """``keys`` (``PLATFORMDB_SECRET_KEYS``) when set, else the public development key."""
    value = (keys or "").strip()
    return secrets.KeyRing.parse(value or DEV_SECRET_KEYS,
                                 source=secrets.ENV_VAR if value else "DEV_SECRET_KEYS")


def row_counts(conn: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for table in (*TENANT_TABLES, "permissions", "role_permissions"):
        row = conn.execute(
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()
        counts[table] = int(row[0]) if row else 0
    return counts
