"""The migration engine: plans, checks and applies migrations through a Driver.

Every rule lives here and nowhere else:

- file names and numbering are checked when files are discovered;
- every file (and down file) is parsed before anything runs;
- an applied file that is gone or whose checksum changed stops everything;
- one runner at a time (the driver's lock), each migration in its own
  transaction with its ledger row, so a failure changes nothing.
"""

from __future__ import annotations

import getpass
import socket

from platformdb.errors import MigrationError
from platformdb.migrate.base import AppliedMigration, Driver, Migration, PlanningDriver
from platformdb.migrate.plan import MigrationPlan
from platformdb.types import StatusRow, Step

__all__ = ["Migrator", "StatusRow", "Step", "who"]


def who() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def _stale(migration: Migration, row: AppliedMigration) -> bool:
    """A repeatable migration to apply again: its text changed, or the store lost it."""
    return row.checksum != migration.checksum or not row.on_server


class Migrator:
    """Applies ``migrations`` to the store behind ``driver``."""

    def __init__(self, driver: Driver, migrations: list[Migration]) -> None:
        self.driver = driver
        self.migrations = migrations
        self.by_version = {m.version: m for m in migrations}

    # -- checks --------------------------------------------------------------

    def validate_files(self) -> None:
        """Parse every up and down file; raise on the first malformed one."""
        for migration in self.migrations:
            self.driver.validate(migration, migration.sql)
            down = migration.down_sql()
            if down is not None and migration.down_path is not None:
                self.driver.validate(migration, down)

    def problems(self, applied: list[AppliedMigration]) -> list[str]:
        """Why the ledger and the files disagree; empty when they agree."""
        found: list[str] = []
        for row in applied:
            migration = self.by_version.get(row.version)
            if migration is None:
                found.append(
                    f"applied migration {row.version:03d}_{row.name} is missing from the "
                    "migrations folder; restore the file (applied migrations are never deleted)"
                )
            elif migration.checksum != row.checksum and not migration.repeatable:
                found.append(
                    f"{migration.path.name} was edited after it was applied (ledger checksum "
                    f"{row.checksum[:12]}, file {migration.checksum[:12]}); revert the edit "
                    "and put the change in a new migration"
                )
        applied_versions = sorted(row.version for row in applied)
        if applied_versions and applied_versions != list(range(1, applied_versions[-1] + 1)):
            found.append(
                f"the ledger has gaps ({', '.join(f'{v:03d}' for v in applied_versions)});"
                " it was edited by hand"
            )
        return found

    def pending(self, applied: list[AppliedMigration]) -> list[Migration]:
        """Migrations not applied yet, after refusing any drift."""
        found = self.problems(applied)
        if found:
            raise MigrationError(found[0])
        done = {row.version: row for row in applied}
        return [m for m in self.migrations
                if m.version not in done or (m.repeatable and _stale(m, done[m.version]))]

    # -- commands ------------------------------------------------------------

    def status(self) -> list[StatusRow]:
        applied = {row.version: row for row in self.driver.applied()}
        rows: list[StatusRow] = []
        for migration in self.migrations:
            row = applied.get(migration.version)
            if row is None:
                rows.append(StatusRow(migration.version, migration.name, "pending"))
                continue
            state = "applied" if row.checksum == migration.checksum else "edited"
            if migration.repeatable and _stale(migration, row):
                state = "not on server" if row.checksum == migration.checksum else "changed"
            rows.append(StatusRow(migration.version, migration.name, state, row.applied_at,
                                  row.duration_ms, row.applied_by))
        for version, row in sorted(applied.items()):
            if version not in self.by_version:
                rows.append(StatusRow(version, row.name, "missing", row.applied_at,
                                      row.duration_ms, row.applied_by))
        return sorted(rows, key=lambda r: r.version)

    def verify(self) -> list[str]:
        """Problems found (files that do not parse, drift); empty means all is well."""
        try:
            self.validate_files()
        except MigrationError as exc:
            return [str(exc)]
        return self.problems(self.driver.applied())

    def up(self, target: int | None = None, dry_run: bool = False) -> list[Step]:
        """Apply every pending migration (up to ``target``), oldest first."""
        if target is not None and target not in self.by_version:
            raise MigrationError(f"no migration numbered {target:03d}")
        self.validate_files()
        with self.driver.lock():
            if not dry_run:
                self.driver.ensure_ledger()
            todo = [m for m in self.pending(self.driver.applied())
                    if target is None or m.version <= target]
            return [self._apply(m, dry_run) for m in todo]

    def run(self, version: int, dry_run: bool = False) -> Step:
        """Apply exactly migration ``version``; every earlier one must be applied."""
        migration = self.by_version.get(version)
        if migration is None:
            raise MigrationError(f"no migration numbered {version:03d}")
        self.validate_files()
        with self.driver.lock():
            if not dry_run:
                self.driver.ensure_ledger()
            pending = self.pending(self.driver.applied())
            if migration not in pending:
                raise MigrationError(f"{migration.label} is already applied")
            if pending[0] is not migration:
                raise MigrationError(
                    f"{pending[0].label} must be applied before {migration.label};"
                    f" run `migrate up --to {version:03d}` to apply both"
                )
            return self._apply(migration, dry_run)

    def down(self, dry_run: bool = False) -> Step:
        """Revert the last applied migration through its down file."""
        self.validate_files()
        with self.driver.lock():
            applied = self.driver.applied()
            self.pending(applied)  # refuses drift before anything is reverted
            if not applied:
                raise MigrationError(f"no {self.driver.store} migration is applied; "
                                     "nothing to roll back")
            migration = self.by_version[max(row.version for row in applied)]
            down_sql = migration.down_sql()
            if down_sql is None:
                reason = f" ({migration.no_down_reason})" if migration.no_down_reason else ""
                raise MigrationError(
                    f"{migration.label} has no down file{reason}; write a new migration to undo it"
                )
            if dry_run:
                return Step(self.driver.store, "down", migration.label, None)
            ms = self.driver.revert(migration, down_sql)
            return Step(self.driver.store, "down", migration.label, ms)

    def plan(self, target: int | None = None) -> list[MigrationPlan]:
        """What each pending migration (up to ``target``) would do, statement by statement.

        Read only: nothing is locked or changed. A store without a planner (Redis) gets
        one entry per pending migration with no statements.
        """
        if target is not None and target not in self.by_version:
            raise MigrationError(f"no migration numbered {target:03d}")
        self.validate_files()
        todo = [m for m in self.pending(self.driver.applied())
                if target is None or m.version <= target]
        if isinstance(self.driver, PlanningDriver):
            return self.driver.plan(todo)
        return [MigrationPlan(self.driver.store, m.version, m.label, "repeatable"
                              if m.repeatable else "statements") for m in todo]

    def _apply(self, migration: Migration, dry_run: bool) -> Step:
        if dry_run:
            return Step(self.driver.store, "up", migration.label, None)
        ms = self.driver.apply(migration, who())
        return Step(self.driver.store, "up", migration.label, ms)
