"""One exception hierarchy; the CLI turns each into an exit code and one line.

Exit codes follow DESIGN.md: 1 a check that failed (drift, unhealthy), 2 bad
usage, configuration or an unreachable server.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass(frozen=True)
class Hint:
    """What the caller can do about an error, as data, never as command-line text.

    The library says what is wrong and, here, what would get past it; the CLI
    renders it in its own words (``pass --force to replace it``, ``run
    `platformdb migrate up```), a Python caller reads the fields.
    """

    flag: str | None = None
    """An option of the same command that gets past the refusal (``--force``)."""
    command: str | None = None
    """Another command to run first (``platformdb migrate up``)."""
    variable: str | None = None
    """A setting to check or set (``PLATFORMDB_POSTGRES_URL``)."""
    does: str = ""
    """What following the hint does, completing the sentence (``to replace it``)."""


class PlatformDBError(Exception):
    """Base of every error platformdb raises on purpose.

    The message is one line that says what is wrong; ``hint`` says what gets past it.
    """

    exit_code = 2

    def __init__(self, message: str = "", *, hint: Hint | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class ConfigError(PlatformDBError):
    """A setting is missing or malformed (bad URL, unknown option)."""


class StoreUnavailable(PlatformDBError):
    """A server cannot be reached or refused the credentials.

    ``store`` names the store when known, so a caller (the CLI) can say where
    to look; the original driver exception is always the ``__cause__``.
    """

    def __init__(self, message: str, *, store: str | None = None,
                 hint: Hint | None = None) -> None:
        super().__init__(message, hint=hint)
        self.store = store


class Unavailable(StoreUnavailable):
    """The store has no URL for this command (an embedded server that is not running)."""


class ValidationError(PlatformDBError):
    """Input was rejected before anything was written."""


class MigrationError(PlatformDBError):
    """A migration could not be planned or applied; nothing was changed."""


class CheckFailed(PlatformDBError):
    """A check ran and found a problem (drift, unhealthy store)."""

    exit_code = 1


class QueryFailed(PlatformDBError):
    """The store refused the statement (syntax, permissions, a constraint...)."""

    exit_code = 1


class ToolFailed(PlatformDBError):
    """An external program (pg_dump, pg_restore, psql...) failed for a reason other than
    reaching the server; the message ends with the program's own last word."""


@contextmanager
def when_interrupted(outcome: str | Callable[[], str]) -> Iterator[None]:
    """Say what an interruption (Ctrl-C, SIGINT) inside the block kept or undid.

    The outcome becomes a note of the ``KeyboardInterrupt`` (``exc.__notes__``); the CLI
    prints ``interrupted; <outcome>``. A callable is asked at the moment of the
    interruption (the outcome depends on how far the work got).
    """
    try:
        yield
    except KeyboardInterrupt as exc:
        exc.add_note(outcome() if callable(outcome) else outcome)
        raise


def one_line(text: str, limit: int = 1000) -> str:
    """``text`` on one line: every non-empty line kept, joined with ``; ``.

    Driver errors often put the cause on one line and a hint on the next
    (psycopg: "... failed: Connection refused" / "Is the server running...");
    keeping only one of them loses what went wrong.
    """
    parts = [" ".join(line.split()) for line in text.splitlines()]
    joined = "; ".join(part for part in parts if part)
    return joined if len(joined) <= limit else joined[: limit - 1] + "…"
