"""The tree being linted: where its files are, each file read and parsed once."""

from __future__ import annotations

from pathlib import Path

from platformdb.lint import sqlfiles

POSTGRES_DIR = "postgresql"
CLICKHOUSE_DIR = "clickhouse"
REDIS_SCRIPTS_DIR = "redis/scripts"
PYTHON_DIR = "src"
MIGRATION_DIRS = ("postgresql/migrations", "clickhouse/migrations")


class Context:
    """One lint run over the repository (or fixture) at ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self._sql: dict[Path, sqlfiles.SqlFile] = {}

    def rel(self, path: Path) -> str:
        """``path`` relative to the root, ``/``-separated, as findings show it."""
        try:
            return path.resolve().relative_to(self.root).as_posix()
        except ValueError:
            return path.as_posix()

    def files(self, folder: str, pattern: str) -> list[Path]:
        """Files under ``root/folder`` matching ``pattern``, sorted; none if absent."""
        base = self.root / folder
        if not base.is_dir():
            return []
        return sorted(p for p in base.glob(pattern) if p.is_file())

    def postgres_files(self) -> list[Path]:
        return self.files(POSTGRES_DIR, "**/*.sql")

    def migration_files(self, folder: str = "postgresql/migrations") -> list[Path]:
        """The up files of a migrations folder (``.down.sql`` left out)."""
        return [p for p in self.files(folder, "*.sql") if not p.name.endswith(".down.sql")]

    def sql(self, path: Path) -> sqlfiles.SqlFile:
        """``path`` read and parsed with pglast, cached for the run."""
        key = path.resolve()
        if key not in self._sql:
            self._sql[key] = sqlfiles.load(key, self.rel(key))
        return self._sql[key]
