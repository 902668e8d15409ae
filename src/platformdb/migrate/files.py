"""Finding and checking migration files: ``NNN_description.sql`` (+ ``.down.sql``).

Directives are comment lines at the top of a file:

``-- platformdb: no-transaction``
    the file cannot run inside a transaction (``CREATE INDEX CONCURRENTLY``);
``-- platformdb: no-down <reason>``
    the migration has no down file on purpose, and says why;
``-- platformdb: online-index``
    (PostgreSQL) every statement is a ``CREATE INDEX``, built without blocking
    writes: ``CONCURRENTLY`` on a plain table; on a partitioned table ``ON
    ONLY`` the parent, concurrently on each leaf partition, then attached
    (:mod:`platformdb.stores.postgres.online_index`); resumable;
``-- platformdb: backfill [batch-size=N] [pause=SECONDS]``
    (PostgreSQL) the file is one ``UPDATE``, run in key-range batches of its
    table's primary key, partition by partition, each batch its own
    transaction with its progress (:mod:`platformdb.stores.postgres.backfill`); resumable.

A file with any of the last three runs outside a transaction.
"""

from __future__ import annotations

import re
from pathlib import Path

from platformdb.errors import MigrationError
from platformdb.migrate.base import Migration

UP_RE = re.compile(r"^(?P<version>\d{3,})_(?P<name>[a-z0-9][a-z0-9_]*)\.sql$")
DOWN_RE = re.compile(r"^(?P<version>\d{3,})_(?P<name>[a-z0-9][a-z0-9_]*)\.down\.sql$")
DIRECTIVE_RE = re.compile(r"^--\s*platformdb:\s*(?P<key>[a-z-]+)\s*(?P<value>.*)$")
KNOWN_DIRECTIVES = {"no-transaction", "no-down", "online-index", "backfill"}
OUTSIDE_TRANSACTION = ("no-transaction", "online-index", "backfill")


def parse_directives(text: str, path: Path) -> dict[str, str]:
    """The ``-- platformdb:`` lines of the leading comment block."""
    found: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if not line.startswith("--"):
            break
        match = DIRECTIVE_RE.match(line)
        if match is None:
            continue
        key = match["key"]
        if key not in KNOWN_DIRECTIVES:
            raise MigrationError(f"{path.name}:{number}: unknown directive 'platformdb: {key}'")
        found[key] = match["value"].strip()
    if "no-down" in found and not found["no-down"]:
        raise MigrationError(f"{path.name}: 'platformdb: no-down' needs a reason")
    return found


def discover(directory: Path) -> list[Migration]:
    """Every migration in ``directory``, checked for names, duplicates and gaps.

    Raises :class:`MigrationError` for a malformed name, two files with one
    number, a down file with no up file, or a gap in the numbering.
    """
    if not directory.is_dir():
        raise MigrationError(f"migrations folder {directory} does not exist")
    ups: dict[int, Path] = {}
    downs: dict[int, Path] = {}
    for path in sorted(directory.iterdir()):
        if path.suffix != ".sql":
            continue
        down = DOWN_RE.match(path.name)
        up = UP_RE.match(path.name)
        if down:
            _add_unique(downs, int(down["version"]), path)
        elif up:
            _add_unique(ups, int(up["version"]), path)
        else:
            raise MigrationError(
                f"{path.name}: not a migration name; expected NNN_description.sql "
                "(lower-case letters, digits and _)"
            )
    for version, path in downs.items():
        up_path = ups.get(version)
        if up_path is None or up_path.stem != path.name.removesuffix(".down.sql"):
            raise MigrationError(f"{path.name}: down file without a matching up file")
    migrations = [_load(version, ups[version], downs.get(version)) for version in sorted(ups)]
    _check_sequence(migrations)
    return migrations


def _add_unique(seen: dict[int, Path], version: int, path: Path) -> None:
    if version in seen:
        raise MigrationError(
            f"two migrations share number {version:03d}: {seen[version].name} and {path.name}"
        )
    seen[version] = path


def _load(version: int, path: Path, down_path: Path | None) -> Migration:
    match = UP_RE.match(path.name)
    assert match is not None
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise MigrationError(f"{path.name}: not UTF-8 text") from exc
    if not text.strip():
        raise MigrationError(f"{path.name}: the file is empty")
    directives = parse_directives(text, path)
    return Migration(
        version=version,
        name=match["name"],
        path=path,
        sql=text,
        down_path=down_path,
        transactional=not any(key in directives for key in OUTSIDE_TRANSACTION),
        no_down_reason=directives.get("no-down"),
        directives=directives,
    )


def _check_sequence(migrations: list[Migration]) -> None:
    for expected, migration in enumerate(migrations, start=1):
        if migration.version != expected:
            raise MigrationError(
                f"gap in migration numbers: expected {expected:03d}, found {migration.path.name};"
                " numbers must run 001, 002, ... without gaps"
            )


def next_file_names(directory: Path, name: str) -> tuple[Path, Path]:
    """Paths for a new migration called ``name``: the next number, up and down."""
    slug = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
    if not slug:
        raise MigrationError(f"{name!r} is not a usable migration name; use words like add_reports")
    existing = discover(directory) if any(directory.glob("*.sql")) else []
    version = len(existing) + 1
    stem = f"{version:03d}_{slug}"
    return directory / f"{stem}.sql", directory / f"{stem}.down.sql"
