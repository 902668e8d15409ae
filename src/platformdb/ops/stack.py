"""``platformdb up | down | status | env | pgbouncer``: the embedded stack, and PgBouncer."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from platformdb import binaries, embedded
from platformdb.config import Settings
from platformdb.embedded import ServiceState
from platformdb.errors import ConfigError, Hint, PlatformDBError, Unavailable, when_interrupted
from platformdb.journal import unfinished
from platformdb.ops.backup import recover
from platformdb.ops.context import Context, context, resolve
from platformdb.stores.postgres import pgbouncer
from platformdb.stores.postgres.pgbouncer import SERVICES, PoolSettings
from platformdb.types import Endpoints

__all__ = ["SERVICES", "Logins", "PoolSettings", "ServiceState", "down", "env",
           "pgbouncer_config", "pgbouncer_logins", "status", "up"]


def up(settings: Settings) -> list[ServiceState]:
    """Start the embedded stack (idempotent); the state of each service. A restore that
    a crash interrupted (its journal under ``$PLATFORMDB_HOME/journal/``) is then
    finished or rolled back (:func:`platformdb.ops.backup.recover`)."""
    with when_interrupted("what had started keeps running (`platformdb status` shows it; "
                          "`platformdb up` again finishes)"):
        states = embedded.up(settings.home)
    if unfinished(settings.home):
        try:
            recover(resolve(settings, start=False))
        except PlatformDBError as exc:
            exc.add_note("the stack is up; `platformdb recover` tries again")
            raise
    return states


def down(settings: Settings) -> list[str]:
    """Stop what ``up`` started, and nothing else; the services stopped."""
    with when_interrupted("some services may still run (`platformdb status` shows them)"):
        return embedded.down(settings.home)


def status(settings: Settings) -> list[ServiceState]:
    """The embedded stack's services (starts nothing); no stack at all is an
    :class:`~platformdb.errors.Unavailable` saying what to run."""
    if not settings.home.is_dir():
        raise Unavailable(f"no embedded stack at {settings.home}", hint=NO_STACK)
    return embedded.status(settings.home)


NO_STACK = Hint(command="platformdb up", does="to start one (or set PLATFORMDB_HOME to its "
                "folder)")


def env(settings: Settings) -> list[str]:
    """``export`` lines that point a shell at the stack (``eval "$(platformdb env)"``):
    starts nothing; see :func:`platformdb.embedded.env_lines`."""
    return embedded.env_lines(settings)


def pgbouncer_config(target: Context | Endpoints, pool: PoolSettings) -> str:
    """pgbouncer.ini for the context's PostgreSQL, for the installed PgBouncer's version
    (1.21's features when none is installed)."""
    ctx = context(target)
    program = binaries.pgbouncer()
    return pgbouncer.config_text(
        ctx.url("postgresql"), settings=pool,
        pgbouncer_version=pgbouncer.version(program) if program else (1, 21))


@dataclass
class Logins:
    """The service logins ``pgbouncer logins`` provisioned, and where it wrote the
    auth_file (when asked to)."""

    password_files: dict[str, Path]
    """login -> the 0600 file under ``$PLATFORMDB_HOME/secrets/`` that keeps its password."""
    auth_file: Path | None


def pgbouncer_logins(target: Context | Endpoints, out_dir: Path | None = None) -> Logins:
    """Create (or refresh) one PostgreSQL login per service, their passwords kept under
    ``$PLATFORMDB_HOME/secrets/``; with ``out_dir``, write PgBouncer's auth_file there
    (owner-only: it holds SCRAM secrets)."""
    ctx = context(target)
    home = ctx.endpoints.home
    if home is None:
        raise ConfigError("PgBouncer's service logins keep their passwords under "
                          "PLATFORMDB_HOME, which this context has none of")
    with when_interrupted("some logins may be made already: run it again (it creates what "
                          "is missing and keeps what is there)"):
        secrets_by_login = pgbouncer.provision_logins(ctx.url("postgresql"), home)
    files = {login: pgbouncer.secret_file(home, login) for login in secrets_by_login}
    if out_dir is None:
        return Logins(files, None)
    out_dir.mkdir(parents=True, exist_ok=True)
    auth_file = out_dir / "userlist.txt"
    descriptor = os.open(auth_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(pgbouncer.userlist(secrets_by_login))
    return Logins(files, auth_file)
