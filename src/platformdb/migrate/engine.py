"""The migration engine: plans, checks and applies migrations through a Driver.

Every rule lives here and nowhere else:

- file names and numbering are checked when files are discovered;
- every file (and down file) is parsed before anything runs;
- an applied file that is gone or whose checksum changed stops everything;
- one runner at a time (the driver's lock), each migration in its own
  transaction with its ledger row, so a failure changes nothing;
- drift and baseline compare snapshots (:mod:`.snapshot`): the live schema
  against what the migrations build in a scratch database. After ``up``,
  ``down``, ``run``, ``baseline`` and ``verify --drift`` the engine records
  the live schema's fingerprint when it is known good (or, when the schema
  had drifted before the command, that drift was found), so ``health`` can
  compare one fingerprint instead of building a scratch database.
"""

from __future__ import annotations

import getpass
import socket
from datetime import UTC, datetime

from platformdb.errors import CheckFailed, MigrationError
from platformdb.migrate.base import (
    AppliedMigration,
    Driver,
    Migration,
    PlanningDriver,
    SchemaDriver,
)
from platformdb.migrate.planning import MigrationPlan
from platformdb.migrate.snapshot import Difference, SchemaState, diff, fingerprint
from platformdb.progress import NO_PROGRESS, Progress
from platformdb.types import StatusRow, Step

__all__ = ["Migrator", "SchemaDiffers", "StatusRow", "Step", "who"]


class SchemaDiffers(CheckFailed):
    """The live schema is not what the migrations build; ``differences`` says where."""

    def __init__(self, message: str, differences: list[Difference]) -> None:
        super().__init__(message)
        self.differences = differences


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
    """Applies ``migrations`` to the store behind ``driver``; each migration that runs
    reports itself to ``progress`` while it runs (a long one shows how long it has taken)."""

    def __init__(self, driver: Driver, migrations: list[Migration], *,
                 progress: Progress = NO_PROGRESS) -> None:
        self.driver = driver
        self.migrations = migrations
        self.by_version = {m.version: m for m in migrations}
        self.progress = progress

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
            if state == "applied" and row.baselined:
                state = "baselined"
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
            if dry_run:
                return [self._apply(m, dry_run) for m in todo]
            before = self._schema_before(bool(todo))
            steps = [self._apply(m, dry_run) for m in todo]
            self._record_schema(before, "migrate up")
            return steps

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
            if dry_run:
                return self._apply(migration, dry_run)
            before = self._schema_before(True)
            step = self._apply(migration, dry_run)
            self._record_schema(before, "migrate run")
            return step

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
            before = self._schema_before(True)
            ms = self.driver.revert(migration, down_sql)
            self._record_schema(before, "migrate down")
            return Step(self.driver.store, "down", migration.label, ms)

    # -- schema: drift, baseline, the recorded fingerprint ---------------------

    def _schema_driver(self) -> SchemaDriver:
        if not isinstance(self.driver, SchemaDriver):
            raise MigrationError(f"{self.driver.store} has no schema to compare")
        return self.driver

    def expected(self, versions: list[int]) -> list[Migration]:
        missing = [v for v in versions if v not in self.by_version]
        if missing:
            raise MigrationError(f"applied migration {missing[0]:03d} is missing from the "
                                 "migrations folder; its schema cannot be rebuilt")
        return [self.by_version[v] for v in sorted(versions)]

    def drift(self) -> list[Difference]:
        """How the live schema differs from what the applied migrations build.

        The applied migrations run in a scratch database (dropped afterwards); both
        schemas are read as snapshots and compared object by object. The outcome is
        recorded for ``health``: the fingerprint when there is no drift, the drift
        otherwise.
        """
        self.validate_files()
        driver = self._schema_driver()
        applied = self.driver.applied()
        expected = driver.expected_snapshot(self.expected([row.version for row in applied]))
        live = driver.snapshot()
        found = diff(expected, live)
        if applied:
            version = max(row.version for row in applied)
            if found:
                driver.record_schema_state(
                    None, version, f"{len(found)} difference(s) found by migrate verify --drift"
                    f" at {_now()}, first {found[0].describe()}"[:1000])
            else:
                driver.record_schema_state(fingerprint(live), version, "migrate verify --drift")
        return found

    def baseline(self, target: int | None = None) -> list[Step]:
        """Adopt a database built without the engine (plain ``psql -f``): record migrations
        1..``target`` as applied (baselined) when its schema equals what they build.

        Refuses a database that already has a ledger, and any difference:
        :class:`SchemaDiffers` lists them; nothing is recorded then.
        """
        if not self.migrations:
            raise MigrationError(f"no {self.driver.store} migrations to baseline")
        last = target if target is not None else self.migrations[-1].version
        if last not in self.by_version:
            raise MigrationError(f"no migration numbered {last:03d}")
        self.validate_files()
        driver = self._schema_driver()
        with self.driver.lock():
            applied = self.driver.applied()
            if applied:
                raise MigrationError(
                    f"the {self.driver.store} ledger already records {len(applied)} migration(s);"
                    " baseline adopts a database that has none (use migrate up)")
            migrations = self.expected(list(range(1, last + 1)))
            expected = driver.expected_snapshot(migrations)
            live = driver.snapshot()
            found = diff(expected, live)
            if found:
                raise SchemaDiffers(
                    f"the {self.driver.store} schema is not what migrations 001-{last:03d} build:"
                    f" {len(found)} difference(s), first {found[0].describe()}", found)
            self.driver.ensure_ledger()
            driver.record_baseline(migrations, who())
            driver.record_schema_state(fingerprint(live), last, "migrate baseline")
        return [Step(self.driver.store, "baseline", m.label, 0) for m in migrations]

    def recorded_drift(self) -> str | None:
        """For ``health``: drift since the fingerprint was recorded (one snapshot, no
        scratch database); None when there is none or nothing was recorded yet."""
        if not isinstance(self.driver, SchemaDriver):
            return None
        state = self.driver.schema_state()
        if state is None:
            return None
        if state.fingerprint is None:
            return f"schema drift: {state.note}"
        if fingerprint(self.driver.snapshot()) != state.fingerprint:
            when = state.recorded_at.isoformat(timespec="seconds") if state.recorded_at else "?"
            return (f"schema drift: the live schema changed since its fingerprint was recorded"
                    f" by {state.note} at {when}")
        return None

    def _schema_before(self, changing: bool) -> tuple[SchemaState | None, str | None] | None:
        """What to compare after a command that changes the schema: the recorded state and
        the live fingerprint now (skipped when nothing will change and a state exists)."""
        if not isinstance(self.driver, SchemaDriver):
            return None
        state = self.driver.schema_state()
        if not changing and state is not None:
            return None
        if state is None or state.fingerprint is None:
            return state, None
        return state, fingerprint(self.driver.snapshot())

    def _record_schema(self, before: tuple[SchemaState | None, str | None] | None,
                       command: str) -> None:
        if before is None or not isinstance(self.driver, SchemaDriver):
            return
        state, live_before = before
        applied = self.driver.applied()
        version = max((row.version for row in applied), default=0)
        if state is not None and state.fingerprint is None:
            self.driver.record_schema_state(None, version, state.note)  # not cleared by this
        elif state is not None and live_before != state.fingerprint:
            self.driver.record_schema_state(
                None, version, f"the live schema had changed before {command} at {_now()} "
                "(since the fingerprint recorded at "
                f"{state.recorded_at.isoformat(timespec='seconds') if state.recorded_at else '?'})")
        else:
            self.driver.record_schema_state(fingerprint(self.driver.snapshot()), version, command)

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
        with self.progress.task(f"{self.driver.store}: applying {migration.label}"):
            ms = self.driver.apply(migration, who())
        return Step(self.driver.store, "up", migration.label, ms)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
