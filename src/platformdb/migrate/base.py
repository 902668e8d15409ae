"""What the migration engine needs from a store: the ``Driver`` protocol.

Like dbmate's driver interface, a store is about ten small methods; the
engine (:mod:`platformdb.migrate.engine`) holds every rule about ordering,
checksums and refusals, so a new store's driver is one file in its folder
(``stores/<store>/driver.py``).
"""

from __future__ import annotations

import hashlib
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from platformdb.migrate.planning import MigrationPlan
    from platformdb.migrate.snapshot import SchemaState, Snapshot


@dataclass(frozen=True)
class Migration:
    """One numbered migration file and its optional ``.down.sql``."""

    version: int
    name: str
    path: Path
    sql: str
    down_path: Path | None = None
    transactional: bool = True
    no_down_reason: str | None = None
    directives: dict[str, str] = field(default_factory=dict)
    repeatable: bool = False
    """Applied again whenever its text changes, instead of frozen once applied:
    code a store replaces as a whole (the Redis functions library)."""

    @property
    def label(self) -> str:
        return f"{self.version:03d}_{self.name}"

    @property
    def checksum(self) -> str:
        return checksum(self.sql)

    def down_sql(self) -> str | None:
        return self.down_path.read_text(encoding="utf-8") if self.down_path else None


@dataclass(frozen=True)
class AppliedMigration:
    """A row of a store's ledger."""

    version: int
    name: str
    checksum: str
    applied_at: datetime
    duration_ms: int
    applied_by: str
    on_server: bool = True
    """False when the ledger records it but the store lost it (a repeatable
    migration's code missing on a Redis primary); ``up`` applies it again."""
    baselined: bool = False
    """Recorded by ``migrate baseline`` (the schema was found equal), not run."""


def checksum(text: str) -> str:
    """SHA-256 of the file's text with line endings normalised."""
    return hashlib.sha256(text.replace("\r\n", "\n").encode("utf-8")).hexdigest()


class Driver(Protocol):
    """The store side of the engine. Every method is small and does one thing."""

    store: str
    """The store's name: ``postgresql``, ``clickhouse``..."""

    def ping(self) -> None:
        """Raise :class:`~platformdb.errors.StoreUnavailable` unless reachable."""

    def validate(self, migration: Migration, text: str) -> None:
        """Raise :class:`~platformdb.errors.MigrationError` if ``text`` does not parse."""

    def lock(self) -> AbstractContextManager[None]:
        """Hold the store-wide migration lock (one runner at a time)."""

    def ensure_ledger(self) -> None:
        """Create the ledger if it is missing."""

    def applied(self) -> list[AppliedMigration]:
        """The ledger rows, oldest first (empty when there is no ledger yet)."""

    def apply(self, migration: Migration, applied_by: str) -> int:
        """Run ``migration`` and record it; return the duration in ms.

        Transactional migrations run with their ledger insert in one
        transaction: on failure neither the schema nor the ledger changes.
        """

    def revert(self, migration: Migration, down_sql: str) -> int:
        """Run ``down_sql`` and delete the ledger row, atomically; return ms."""

    def dump_schema(self) -> str:
        """A textual dump of the schema, for comparisons and docs."""

    def close(self) -> None:
        """Release the connection."""


@runtime_checkable
class PlanningDriver(Protocol):
    """A driver that can say what pending migrations would do (``migrate plan``)."""

    def plan(self, migrations: list[Migration]) -> list[MigrationPlan]:
        """Each migration's statements with their locks, rewrites, scans and sizes."""


@runtime_checkable
class SchemaDriver(Protocol):
    """A driver whose schema can be read as a snapshot and rebuilt in a scratch database
    (``verify --drift``, ``baseline``, drift in ``health``)."""

    def snapshot(self) -> Snapshot:
        """The live schema, from the catalogues."""

    def expected_snapshot(self, migrations: list[Migration]) -> Snapshot:
        """The schema ``migrations`` build, in a scratch database dropped afterwards."""

    def schema_state(self) -> SchemaState | None:
        """The fingerprint recorded when the schema was last known good (None: never)."""

    def record_schema_state(self, fingerprint: str | None, version: int, note: str) -> None:
        """Record a known-good fingerprint, or ``None`` with why drift was found."""

    def record_baseline(self, migrations: list[Migration], applied_by: str) -> None:
        """Ledger rows for ``migrations``, flagged as baselined (not run)."""
