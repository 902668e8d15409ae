"""``platformdb migrate ...``: one function per command, over every store's migrations.

Each store builds its own engine (:meth:`platformdb.stores.base.Store.open_migrator`)
with the options of the context; these functions only choose the stores and
gather what they report.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

from platformdb.errors import when_interrupted
from platformdb.migrate import new_migration
from platformdb.migrate.engine import SchemaDiffers
from platformdb.migrate.options import Progress, parse_duration
from platformdb.migrate.planning import MigrationPlan
from platformdb.migrate.snapshot import Difference
from platformdb.ops.context import Context, context
from platformdb.stores import registry
from platformdb.stores.postgres import PostgresStore
from platformdb.stores.postgres import backfill as backfills
from platformdb.types import Endpoints, StatusRow, Step

TEST_DATABASE = "platform_test"


def flags(lock_timeout: str | None = None, lock_retries: int | None = None,
          runner_wait: str | None = None, scratch_url: str | None = None) -> dict[str, object]:
    """The command line's migration options, checked, as overrides of the environment's
    (``None``: not given)."""
    return {
        "lock_timeout_ms": parse_duration(lock_timeout, "--lock-timeout") if lock_timeout
        else None,
        "lock_retries": lock_retries,
        "runner_wait_s": parse_duration(runner_wait, "--runner-wait") / 1000 if runner_wait
        else None,
        "scratch_url": scratch_url,
    }


def up(target: Context | Endpoints, names: list[str] | None = None, *, to: int | None = None,
       dry_run: bool = False) -> list[Step]:
    """Apply every pending migration of each store (all stores by default), up to
    ``to`` where given (a store whose migrations are not numbered ignores it).
    On the embedded stack PostgreSQL's ``platform_test`` database is migrated too."""
    ctx = context(target)
    steps: list[Step] = []
    with when_interrupted(lambda: _kept(steps)):
        for store in ctx.stores(names):
            steps.extend(store.migrate_up(target=to if store.numbered else None,
                                          dry_run=dry_run))
        if not dry_run:
            steps.extend(_test_database(ctx, names, to))
    return steps


INTERRUPTED_MIGRATION = ("the migration in flight did not finish (`platformdb migrate status` "
                         "shows where each store stopped)")


def _kept(steps: list[Step]) -> str:
    """What an interrupted ``migrate up`` kept: every migration applied before, the stores
    done as a whole (the migrations of the store in flight are not reported until it ends)."""
    stores = sorted({step.store for step in steps})
    return (f"{', '.join(stores)} migrated; " if stores else "") + INTERRUPTED_MIGRATION


def _test_database(ctx: Context, names: list[str] | None, to: int | None) -> list[Step]:
    """On the embedded stack, ``platform_test`` gets the same PostgreSQL migrations as
    ``platform_dev``, so the spec's ``psql ... -d platform_test -f postgresql/tests/...``
    runs against the schema. A configured server (PLATFORMDB_POSTGRES_URL) is left alone."""
    url = ctx.endpoints.postgres
    if (url is None or PostgresStore.name not in ctx.endpoints.embedded
            or (names and PostgresStore.name not in names)):
        return []
    test_url = urlsplit(url)._replace(path=f"/{TEST_DATABASE}").geturl()
    test_store = PostgresStore(test_url, options=ctx.migrate)
    return [replace(step, store=f"{PostgresStore.name}/{TEST_DATABASE}")
            for step in test_store.migrate_up(target=to)]


def plan(target: Context | Endpoints, names: list[str] | None = None, *,
         to: int | None = None) -> list[MigrationPlan]:
    """What each pending statement of each store would do (changes nothing)."""
    ctx = context(target)
    plans: list[MigrationPlan] = []
    for store in ctx.stores(names):
        with store.open_migrator() as migrator:
            plans.extend(migrator.plan(to if store.numbered else None))
    return plans


def down(target: Context | Endpoints, store: str, *, dry_run: bool = False) -> Step:
    """Revert the last applied migration of ``store`` (a numbered one)."""
    ctx = context(target)
    with when_interrupted(INTERRUPTED_MIGRATION), \
            ctx.store(registry.check_numbered(registry.check_store(store))).open_migrator() as m:
        return m.down(dry_run=dry_run)


def run(target: Context | Endpoints, store: str, number: int, *, dry_run: bool = False) -> Step:
    """Apply exactly migration ``number`` of ``store`` (every earlier one applied)."""
    ctx = context(target)
    with when_interrupted(INTERRUPTED_MIGRATION), \
            ctx.store(registry.check_numbered(registry.check_store(store))).open_migrator() as m:
        return m.run(number, dry_run=dry_run)


def status(target: Context | Endpoints,
           names: list[str] | None = None) -> dict[str, list[StatusRow]]:
    """Each store's migrations with their state."""
    ctx = context(target)
    return {store.name: store.migration_status() for store in ctx.stores(names)}


@dataclass
class Verified:
    """What ``migrate verify`` found: problems with the files and ledgers, and (with
    drift) each numbered store's differences from what its migrations build."""

    problems: list[str] = field(default_factory=list)
    differences: dict[str, list[Difference]] = field(default_factory=dict)

    @property
    def drifted(self) -> list[str]:
        return [f"{name}: {d.object}: {d.detail}" for name, items in self.differences.items()
                for d in items]

    @property
    def ok(self) -> bool:
        return not self.problems and not self.drifted


def verify(target: Context | Endpoints, names: list[str] | None = None, *,
           drift: bool = False) -> Verified:
    """Files parse and applied files are unchanged; with ``drift``, the live schema of each
    numbered store is what its migrations build (in a scratch database)."""
    ctx = context(target)
    found = Verified()
    for store in ctx.stores(names):
        found.problems.extend(f"{store.name}: {problem}" for problem in store.verify())
        if drift and store.numbered:
            with store.open_migrator() as migrator:
                found.differences[store.name] = migrator.drift()
    return found


def baseline(target: Context | Endpoints, store: str, *, to: int | None = None) -> list[Step]:
    """Record migrations 001..``to`` of ``store`` as applied, only if the schema equals
    what they build (:class:`~platformdb.migrate.engine.SchemaDiffers` otherwise)."""
    ctx = context(target)
    with ctx.store(registry.check_numbered(registry.check_store(store))).open_migrator() as m:
        return m.baseline(to)


def backfill(target: Context | Endpoints, name: str, update: str, *, batch_size: int = 1000,
             pause: float = 0.0, restart: bool = False,
             progress: Progress | None = None) -> backfills.BackfillReport:
    """Run ``update`` over its table in resumable batches, under the name ``name``; rows
    scanned so far (of the table's estimated size) go to the context's progress, and to
    ``progress`` when given."""
    ctx = context(target)
    url = ctx.url(PostgresStore.name)
    with when_interrupted(f"backfill {name} keeps its progress (every finished batch): run "
                          "the same command again to resume"), \
            ctx.progress.task(f"backfill {name}", unit="rows") as task:
        shown = ctx.progress.callback(task)

        def report(what: str, done: int, total: int | None) -> None:
            shown(what, done, total)
            if progress is not None:
                progress(what, done, total)

        return backfills.backfill(url, name, update, batch_size=batch_size, pause=pause,
                                  options=ctx.migrate, progress=report, restart=restart)


def backfill_progress(target: Context | Endpoints,
                      name: str) -> list[backfills.PartitionProgress]:
    """How far backfill ``name`` got, per partition."""
    ctx = context(target)
    return backfills.progress_of(ctx.url(PostgresStore.name), name)


def new(store: str, name: str, directory: Path | None = None) -> tuple[Path, Path]:
    """The next numbered up/down pair of ``store`` from a template."""
    return new_migration(registry.check_numbered(registry.check_store(store)), name,
                         directory)


__all__ = ["SchemaDiffers", "Verified", "backfill", "backfill_progress", "baseline", "down",
           "flags", "new", "plan", "run", "status", "up", "verify"]
