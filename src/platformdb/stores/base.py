"""What every store object offers, and the parts they share.

A store object holds where its store is (a URL resolved once by the caller, or
the reason it is not available) and offers the operations commands loop over:
``health``, ``metrics``, ``open_migrator``, ``backup`` and ``restore``. It
never starts a server: an embedded server that is not running is reported,
not started, and an operation on it raises :class:`~platformdb.errors.StoreUnavailable`.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Protocol

from platformdb.backup import Staged
from platformdb.errors import PlatformDBError, StoreUnavailable
from platformdb.migrate.base import Driver, Migration
from platformdb.migrate.engine import Migrator
from platformdb.migrate.files import discover
from platformdb.migrate.options import MigrateOptions
from platformdb.redaction import redact
from platformdb.resources import data_dir
from platformdb.types import Metric, StatusRow, Step, StoreHealth


class Store(Protocol):
    """One store: PostgreSQL, ClickHouse or Redis."""

    name: str
    url: str | None
    why_missing: str

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

    def metrics(self) -> list[Metric]:
        """The store's key metrics; raises when the store cannot be read."""

    def backup(self, out_dir: Path, **options: Any) -> Path:
        """Write one backup folder (with its manifest) under ``out_dir``."""

    def stage(self, folder: Path, *, force: bool = False, verify: bool = False) -> Staged:
        """Restore ``folder`` beside the target and verify it; the target is untouched."""


class Unavailable(StoreUnavailable):
    """The store has no URL for this command (an embedded server that is not running)."""


class StoreBase:
    """Shared behaviour: URL bookkeeping and the migration-based health check."""

    name = ""

    def __init__(self, url: str | None, why_missing: str = "") -> None:
        self.url = url
        self.why_missing = why_missing or f"no {self.name} server is configured"
        self.migrate_options = MigrateOptions()
        """Lock timeout, retries, runner wait of this store's migrations (the CLI sets them)."""

    @property
    def target(self) -> str:
        return redact(self.url) if self.url else f"embedded ({self.why_missing})"

    def require_url(self) -> str:
        if self.url is None:
            raise Unavailable(self.why_missing, store=self.name)
        return self.url

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
            yield Migrator(driver, migrations)
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
