"""What every command needs, resolved once at the edge and passed down.

The CLI turns configuration into a :class:`Context` once (:func:`resolve`):
where each store is (:class:`~platformdb.types.Endpoints`, the embedded stack
started when the command does work), how migrations behave
(:class:`~platformdb.migrate.options.MigrateOptions`: the environment's
``PLATFORMDB_MIGRATE_*`` under the command line's flags) and the keys that
encrypt secrets. Nothing below re-reads the settings: store objects are built
from the context with their options (:meth:`Context.store`), and library
functions take URLs or clients.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from platformdb import embedded
from platformdb.config import Settings, load_settings
from platformdb.errors import Hint, Unavailable
from platformdb.migrate.options import MigrateOptions
from platformdb.progress import NO_PROGRESS, Progress
from platformdb.stores import registry
from platformdb.stores.base import Store
from platformdb.types import Endpoints


@dataclass(frozen=True)
class Context:
    """The endpoints of one command, and the options its store objects are built with."""

    endpoints: Endpoints
    migrate: MigrateOptions = field(default_factory=MigrateOptions)
    """Lock timeout, retries, runner wait, statement timeout, scratch server."""
    secret_keys: str | None = field(default=None, repr=False)
    """``PLATFORMDB_SECRET_KEYS``: the keys that encrypt DSP credentials (None: unset)."""
    progress: Progress = field(default=NO_PROGRESS, repr=False, compare=False)
    """Where long work reports how far it got (:mod:`platformdb.progress`; the CLI draws
    it, a Python caller sees nothing unless it passes its own)."""

    def store(self, name: str) -> Store:
        """The store object ``name`` (nothing is connected yet)."""
        return registry.open_store(name, self.endpoints, options=self._options())

    def stores(self, names: list[str] | None = None) -> list[Store]:
        """The store objects of ``names`` (default: every store), in registry order."""
        return registry.open_stores(self.endpoints, names, options=self._options())

    def _options(self) -> MigrateOptions:
        """The migration options store objects are built with, reporting to this
        context's progress."""
        return replace(self.migrate, reporter=self.progress)

    def url(self, name: str) -> str:
        """The URL of store ``name``, or :class:`~platformdb.errors.Unavailable` saying why
        there is none."""
        return self.store(name).require_url()

    def with_options(self, **overrides: object) -> Context:
        """This context with some migration options replaced (None keeps the current)."""
        return replace(self, migrate=self.migrate.with_overrides(**overrides))


def context(target: Context | Endpoints) -> Context:
    """``target`` as a context: a Python caller may pass the endpoints alone (default
    migration options, no secret keys)."""
    return target if isinstance(target, Context) else Context(target)


def settings(cluster: str | None = None) -> Settings:
    """The configuration (environment over ``.env``), read once per command."""
    loaded = load_settings()
    return replace(loaded, clickhouse_cluster=cluster) if cluster else loaded


def resolve(found: Settings, *, start: bool, stores: list[str] | None = None,
            migrate: dict[str, object] | None = None,
            progress: Progress = NO_PROGRESS) -> Context:
    """The context of a command. ``start``: commands that do work start the embedded
    servers they need; inspection commands (status, health, stats) never do.
    ``migrate``: a migration command's flags (None: not one), over the environment's
    ``PLATFORMDB_MIGRATE_*``, checked before anything starts. ``progress``: where long
    work reports itself (the command line's display)."""
    chosen = registry.check_stores(stores)
    options = MigrateOptions() if migrate is None else MigrateOptions.from_env(
        dict(found.migrate_env)).with_overrides(**migrate)
    endpoints = embedded.endpoints(found, start=start, stores=chosen)
    wanted = set(chosen if chosen is not None else registry.names())
    if not start and not found.home.is_dir() and wanted <= endpoints.embedded:
        # nothing configured and no stack here (run from another folder?): one line, not a
        # report of every store down
        raise Unavailable(f"no embedded stack at {found.home} and no PLATFORMDB_*_URL set",
                          hint=Hint(command="platformdb up", does="to start one (or set "
                                    "PLATFORMDB_HOME to its folder)"))
    return Context(endpoints, options, found.secret_keys, progress)


def store_names() -> tuple[str, ...]:
    """Every store, in the order commands visit them (the registry's)."""
    return registry.names()


def numbered_store_names() -> tuple[str, ...]:
    """The stores whose migrations are numbered files."""
    return registry.numbered_names()


def url_variable(store: str | None) -> str | None:
    """The setting that names ``store``'s server (for messages)."""
    return registry.url_variable(store) if store else None
