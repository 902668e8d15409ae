"""One exception hierarchy; the CLI turns each into an exit code and one line.

Exit codes follow DESIGN.md: 1 a check that failed (drift, unhealthy), 2 bad
usage, configuration or an unreachable server.
"""

from __future__ import annotations


class PlatformDBError(Exception):
    """Base of every error platformdb raises on purpose.

    The message is one line that says what is wrong and what to do.
    """

    exit_code = 2


class ConfigError(PlatformDBError):
    """A setting is missing or malformed (bad URL, unknown option)."""


class StoreUnavailable(PlatformDBError):
    """A server cannot be reached or refused the credentials.

    ``store`` names the store when known, so a caller (the CLI) can say where
    to look; the original driver exception is always the ``__cause__``.
    """

    def __init__(self, message: str, *, store: str | None = None) -> None:
        super().__init__(message)
        self.store = store


class ValidationError(PlatformDBError):
    """Input was rejected before anything was written."""


class MigrationError(PlatformDBError):
    """A migration could not be planned or applied; nothing was changed."""


class CheckFailed(PlatformDBError):
    """A check ran and found a problem (drift, unhealthy store)."""

    exit_code = 1


def one_line(text: str, limit: int = 1000) -> str:
    """``text`` on one line: every non-empty line kept, joined with ``; ``.

    Driver errors often put the cause on one line and a hint on the next
    (psycopg: "... failed: Connection refused" / "Is the server running...");
    keeping only one of them loses what went wrong.
    """
    parts = [" ".join(line.split()) for line in text.splitlines()]
    joined = "; ".join(part for part in parts if part)
    return joined if len(joined) <= limit else joined[: limit - 1] + "…"
