"""What every store object offers, and the parts they share.

A store object holds where its store is (a URL resolved once by the caller, or
the reason it is not available) and how its migrations behave (given when it
is built), and offers every operation a command needs of one store:
``health``, ``metrics``, ``open_migrator``, ``backup`` and ``stage`` (a restore),
``query`` and ``shell``, and ``tenant`` (one org's data in it). Commands loop
over store objects and never branch on a store's name. A store never starts a
server: an embedded server that is not running is reported, not started, and
an operation on it raises :class:`~platformdb.errors.Unavailable`.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, ClassVar, Protocol, Self

from platformdb.backup import Staged
from platformdb.errors import (
    CheckFailed,
    ConfigError,
    Hint,
    PlatformDBError,
    Unavailable,
    ValidationError,
)
from platformdb.migrate.base import Driver, Migration
from platformdb.migrate.engine import Migrator
from platformdb.migrate.files import discover
from platformdb.migrate.options import MigrateOptions
from platformdb.redaction import redact
from platformdb.resources import data_dir
from platformdb.types import (
    ClientProgram,
    Endpoints,
    Metric,
    QueryResult,
    StatusRow,
    Step,
    StoreHealth,
)


@dataclass(frozen=True)
class Size:
    """What one table (or key family) of a store holds of an org: rows (or keys), bytes."""

    count: int
    bytes: int | None = None
    """None where the store cannot tell (Redis keys)."""


@dataclass(frozen=True)
class Org:
    """An org as the store that keeps the org directory knows it (``organizations``)."""

    id: uuid.UUID
    slug: str | None
    name: str | None
    status: str | None


@dataclass
class TenantPart:
    """What a store's tenant export wrote into its folder of the archive."""

    files: dict[str, int]
    """Each file (relative to the store's folder) and how many rows, keys or jobs it holds."""
    info: dict[str, Any]
    """The manifest's description of the part (format, tables, what was kept)."""
    head: int
    """The store's migration head the export saw."""


class TenantImport(Protocol):
    """A store's part of an archive, loaded beside the live data; nothing is live yet.

    The same steps as a staged restore (:class:`platformdb.backup.Staged`): every
    store is staged, then each is switched in (``last`` ones at the end: their switch
    is the commit the others wait on), then committed; a failure undoes what was
    switched and discards the rest.
    """

    store: str
    loaded: dict[str, int]
    last: bool

    def switch(self) -> None:
        """Make the loaded data the org's live data (a replaced org's is removed first)."""

    def undo(self) -> None:
        """After :meth:`switch`: take the loaded data out, put a replaced org's back."""

    def commit(self) -> None:
        """After every switch: finish (drop the staging copy)."""

    def discard(self) -> None:
        """Before :meth:`switch`: drop the staging copy; nothing live changed."""


class TenantData(Protocol):
    """One org's data in one store, on one open connection (:meth:`Store.tenant`).

    Orgs are ``organizations.id`` values; a store that keeps its org in text (a Redis
    hash tag) reports only the ids that parse as UUIDs. ``unit`` says what its sizes
    count (``rows`` with bytes, or ``keys``); ``activity_label`` names its latest
    activity in reports (``latest_activity``), empty when it has none.
    """

    unit: str
    activity_label: str

    def orgs(self) -> list[Org]:
        """The org directory, where this store keeps it (else empty)."""

    def find_org(self, ref: str) -> Org | None:
        """The org named by ``ref`` (id or slug) in the directory this store keeps."""

    def export(self, org: uuid.UUID, folder: Path) -> TenantPart:
        """Write ``org``'s data into ``folder`` (its part of the archive)."""

    def stage_import(self, org: uuid.UUID, folder: Path, expected: dict[str, int], *,
                     info: dict[str, Any], saved: Path | None) -> TenantImport:
        """Load ``folder`` (this store's part of an archive) beside the live data, checked
        against ``expected`` (file -> count); ``saved``: the replaced org's own part."""

    def sizes(self, org: uuid.UUID | None = None) -> dict[uuid.UUID, dict[str, Size]]:
        """Each org's (or ``org``'s) count and bytes per table or key family."""

    def activity(self, org: uuid.UUID | None = None) -> dict[uuid.UUID, datetime | date]:
        """Each org's latest activity this store knows of."""

    def counts(self, org: uuid.UUID, *, keep_audit: bool = False) -> dict[str, int]:
        """What ``org`` holds here, per table or key family (what is left after a delete;
        ``keep_audit``: its audit trail, which a delete may keep, is not counted)."""

    def checksums(self, org: uuid.UUID) -> dict[str, str]:
        """A digest of ``org``'s data per table or key family."""

    def schema_head(self) -> int:
        """The head of this store's migration ledger (0: never migrated)."""

    def delete(self, org: uuid.UUID, *, keep_audit: bool = False) -> dict[str, int]:
        """Remove ``org`` here (``keep_audit``: but its audit trail); what was removed.
        Re-running it finishes an interrupted one."""

    def scratch_copies(self, org: uuid.UUID) -> dict[str, int]:
        """Copies of ``org``'s data in the scratch places the platform makes in this store
        (staging databases, staging keys): place -> rows or keys of ``org``."""

    def erase_scratch(self, org: uuid.UUID) -> dict[str, int]:
        """Remove ``org``'s rows or keys from those copies (others' stay); what they held."""

    def drop_staging(self, names: list[str] | None) -> list[str]:
        """Drop a killed tenant import's staging (``names`` from its journal; None: every
        import staging copy here); what was dropped."""


class Store(Protocol):
    """One store: PostgreSQL, ClickHouse, Redis, or any other the registry names."""

    name: str
    url: str | None
    why_missing: str
    url_variable: ClassVar[str]
    """The setting that names its server (``PLATFORMDB_POSTGRES_URL``)."""
    numbered: ClassVar[bool]
    """Its migrations are numbered files (``--to N``, ``down``, ``run``, drift, ``new``)."""
    ledger_in_backups: ClassVar[bool]
    """Its backups' manifests carry its migration ledger."""

    @property
    def target(self) -> str:
        """Where the store is, safe to print (password masked)."""

    def require_url(self) -> str:
        """The URL, or :class:`StoreUnavailable` saying why there is none."""

    def open_migrator(self) -> AbstractContextManager[Migrator]:
        """The migration engine for this store, its connection closed on exit."""

    def migrate_up(self, *, target: int | None = None, dry_run: bool = False) -> list[Step]:
        """Apply every pending migration (up to ``target``)."""

    def migration_status(self) -> list[StatusRow]:
        """Each migration with its state: applied, pending, edited or missing."""

    def verify(self) -> list[str]:
        """Problems: files that do not parse, applied files edited or gone."""

    def health(self) -> StoreHealth:
        """Reachability, latency and migration state; never raises for a down store."""

    def health_rows(self) -> list[StoreHealth]:
        """:meth:`health`, and that of what serves the store (PostgreSQL: its PgBouncer)."""

    def metrics(self) -> list[Metric]:
        """The store's key metrics; raises when the store cannot be read."""

    def backup(self, out_dir: Path, **options: Any) -> Path:
        """Write one backup folder (with its manifest) under ``out_dir``."""

    def stage(self, folder: Path, *, force: bool = False, verify: bool = False) -> Staged:
        """Restore ``folder`` beside the target and verify it; the target is untouched."""

    def recover(self, record: dict[str, Any], *, forward: bool) -> str:
        """Finish (``forward``) or roll back the restore a journal's ``record`` describes
        (:mod:`platformdb.journal`); what was done, in a few words."""

    def leftovers(self) -> list[str]:
        """Scratch copies that restores leave only when interrupted, found by their names."""

    def drop_leftovers(self, names: list[str]) -> None:
        """Remove ``names`` (found by :meth:`leftovers`)."""

    def query(self, statement: str) -> QueryResult:
        """Run one statement (autocommit: it takes effect at once) and return its result."""

    def shell(self, args: list[str], *, history: Path | None = None) -> int:
        """The store's interactive client on this terminal (piped input runs as a script);
        its exit status."""

    def tenant(self, *, prefix: str = "") -> AbstractContextManager[TenantData]:
        """Orgs' data in this store, on a connection closed on exit (``prefix``: the
        deployment's key prefix, for a store that has one)."""


class StoreBase:
    """Shared behaviour: URL bookkeeping, the migration-based health check, and the
    defaults of a store that has no query language, client or tenant data."""

    name = ""
    url_variable: ClassVar[str] = ""
    numbered: ClassVar[bool] = True
    ledger_in_backups: ClassVar[bool] = False
    """Its backups' manifests carry its migration ledger (a restore can tell a backup
    whose schema is behind the target's)."""

    def __init__(self, url: str | None, why_missing: str = "", *,
                 options: MigrateOptions | None = None) -> None:
        self.url = url
        self.why_missing = why_missing or f"no {self.name} server is configured"
        self.migrate_options = options or MigrateOptions()
        """Lock timeout, retries, runner wait of this store's migrations."""

    @classmethod
    def from_endpoints(cls, endpoints: Endpoints, options: MigrateOptions | None = None) -> Self:
        """The store where ``endpoints`` say it is (nothing is connected yet)."""
        return cls(endpoints.url(cls.name), endpoints.missing(cls.name), options=options)

    @property
    def target(self) -> str:
        return redact(self.url) if self.url else f"embedded ({self.why_missing})"

    def require_url(self) -> str:
        if self.url is None:
            raise Unavailable(self.why_missing, store=self.name,
                              hint=Hint(variable=self.url_variable or None))
        return self.url

    def health_rows(self) -> list[StoreHealth]:
        return [self.health()]

    def query(self, statement: str) -> QueryResult:
        raise ConfigError(f"{self.name} takes no statements")

    def shell(self, args: list[str], *, history: Path | None = None) -> int:
        raise ConfigError(f"{self.name} has no interactive client")

    def tenant(self, *, prefix: str = "") -> AbstractContextManager[TenantData]:
        return nullcontext(NoTenantData())

    def backup(self, out_dir: Path, **options: Any) -> Path:
        """One backup folder under ``out_dir``; a backup that fails leaves nothing behind."""
        before = set(out_dir.iterdir()) if out_dir.is_dir() else set()
        try:
            return self.write_backup(out_dir, **options)
        except BaseException:
            for leftover in (set(out_dir.iterdir()) if out_dir.is_dir() else set()) - before:
                if leftover.name.startswith(f"{self.name}-"):
                    shutil.rmtree(leftover, ignore_errors=True)
            raise

    def write_backup(self, out_dir: Path, **options: Any) -> Path:
        raise NotImplementedError

    def stage(self, folder: Path, *, force: bool = False, verify: bool = False) -> Staged:
        raise NotImplementedError

    def recover(self, record: dict[str, Any], *, forward: bool) -> str:
        return "nothing to do"

    def leftovers(self) -> list[str]:
        return []

    def drop_leftovers(self, names: list[str]) -> None:
        return None

    def metrics(self) -> list[Metric]:
        raise NotImplementedError

    def migrations_dir(self) -> Path:
        return data_dir(self.name) / "migrations"

    def migrations(self) -> list[Migration]:
        """This store's migrations (numbered files by default)."""
        return discover(self.migrations_dir())

    def driver(self) -> Driver:
        raise NotImplementedError

    @contextmanager
    def open_migrator(self) -> Iterator[Migrator]:
        migrations = self.migrations()
        driver = self.driver()
        try:
            yield Migrator(driver, migrations, progress=self.migrate_options.reporter)
        finally:
            driver.close()

    def migrate_up(self, *, target: int | None = None, dry_run: bool = False) -> list[Step]:
        with self.open_migrator() as migrator:
            return migrator.up(target=target, dry_run=dry_run)

    def migration_status(self) -> list[StatusRow]:
        with self.open_migrator() as migrator:
            return migrator.status()

    def verify(self) -> list[str]:
        with self.open_migrator() as migrator:
            return migrator.verify()

    def health(self) -> StoreHealth:
        """Ping with latency, then the ledger and the schema: pending migrations, edited or
        missing files, or schema drift since the fingerprint recorded by the last migrate
        command (one catalogue snapshot; ``migrate verify --drift`` lists the differences)
        are unhealthy."""
        if self.url is None:
            return StoreHealth(self.name, False, None, self.target, self.why_missing)
        try:
            with self.open_migrator() as migrator:
                latency = timed(migrator.driver.ping)
                rows = migrator.status()
                problems = migrator.problems(migrator.driver.applied())
                drift = migrator.recorded_drift()
                if drift:
                    problems.append(drift)
        except PlatformDBError as exc:
            return StoreHealth(self.name, False, None, self.target, str(exc))
        behind = [r for r in rows if r.state not in ("applied", "baselined")]
        pending = [f"{r.version:03d}_{r.name}" for r in behind]
        healthy = not problems and not behind
        detail = "ok" if healthy else (problems[0] if problems else (
            f"{len(behind)} migration(s) not applied, first {pending[0]} ({behind[0].state})"))
        return StoreHealth(self.name, healthy, round(latency, 2), self.target, detail,
                           pending, problems)


def timed(call: Callable[[], object]) -> float:
    """Milliseconds ``call`` took."""
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


class NoTenantData:
    """A store that keeps nothing per org."""

    unit = "rows"
    activity_label = ""

    def orgs(self) -> list[Org]:
        return []

    def find_org(self, ref: str) -> Org | None:
        return None

    def sizes(self, org: uuid.UUID | None = None) -> dict[uuid.UUID, dict[str, Size]]:
        return {}

    def activity(self, org: uuid.UUID | None = None) -> dict[uuid.UUID, datetime | date]:
        return {}

    def counts(self, org: uuid.UUID, *, keep_audit: bool = False) -> dict[str, int]:
        return {}

    def checksums(self, org: uuid.UUID) -> dict[str, str]:
        return {}

    def schema_head(self) -> int:
        return 0

    def delete(self, org: uuid.UUID, *, keep_audit: bool = False) -> dict[str, int]:
        return {}

    def scratch_copies(self, org: uuid.UUID) -> dict[str, int]:
        return {}

    def erase_scratch(self, org: uuid.UUID) -> dict[str, int]:
        return {}

    def drop_staging(self, names: list[str] | None) -> list[str]:
        return []

    def export(self, org: uuid.UUID, folder: Path) -> TenantPart:
        return TenantPart({}, {}, 0)

    def stage_import(self, org: uuid.UUID, folder: Path, expected: dict[str, int], *,
                     info: dict[str, Any], saved: Path | None) -> TenantImport:
        if expected:
            raise ValidationError(f"the archive holds {', '.join(sorted(expected))}, which "
                                  "this deployment keeps no tenant data for")
        return NothingToImport()


class NothingToImport:
    """The import step of a store that keeps nothing per org."""

    store = ""
    last = False

    def __init__(self) -> None:
        self.loaded: dict[str, int] = {}

    def switch(self) -> None:
        pass

    def undo(self) -> None:
        pass

    def commit(self) -> None:
        pass

    def discard(self) -> None:
        pass


def compare(store: str, found: dict[str, int], expected: dict[str, int]) -> None:
    """Refuse an import whose loaded counts differ from the archive's manifest."""
    for name, count in sorted(expected.items()):
        if found.get(name, 0) != count:
            raise CheckFailed(f"{store} {name}: {found.get(name, 0)} rows after loading, the "
                              f"archive's manifest says {count}; nothing was imported")


def run_client(program: ClientProgram) -> int:
    """Run a client program on this terminal; Ctrl-C goes to it, not to us."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        try:
            return subprocess.run(program.args, env=program.env, check=False).returncode
        except FileNotFoundError as exc:
            raise ConfigError(f"{program.args[0]} is not installed") from exc
    finally:
        signal.signal(signal.SIGINT, previous)


def query_only(statement: str) -> str:
    """``statement``, refused when empty."""
    if not statement.strip():
        raise ConfigError("the statement is empty")
    return statement

