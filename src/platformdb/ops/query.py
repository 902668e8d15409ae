"""``platformdb query | shell``: one statement, or the store's interactive client."""

from __future__ import annotations

from platformdb.errors import when_interrupted
from platformdb.ops.context import Context, context
from platformdb.stores import registry
from platformdb.types import Endpoints, QueryResult


def query(target: Context | Endpoints, store: str, statement: str) -> QueryResult:
    """Run ``statement`` on ``store`` (autocommit: it takes effect at once)."""
    with when_interrupted("the statement was cancelled, unless it had already finished"):
        return context(target).store(registry.check_store(store)).query(statement)


def shell(target: Context | Endpoints, store: str, args: list[str]) -> int:
    """The store's client on this terminal (piped input runs as a script); its exit status.
    Its history, where it keeps one, goes under ``$PLATFORMDB_HOME``."""
    ctx = context(target)
    name = registry.check_store(store)
    home = ctx.endpoints.home
    return ctx.store(name).shell(args, history=home / f"{name}_history" if home else None)
