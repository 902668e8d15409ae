"""How a migration run behaves on a live database: lock timeouts, retries, waits.

Every value has a default that suits a busy production database and can be
set through the environment (``PLATFORMDB_MIGRATE_*``, read once by the CLI
through :mod:`platformdb.config`) or a CLI option; library callers build a
:class:`MigrateOptions` themselves.

===================================== ======= =====================================================
variable                              default meaning
===================================== ======= =====================================================
``PLATFORMDB_MIGRATE_LOCK_TIMEOUT``   ``2s``  ``lock_timeout`` of each attempt: how long a migration
                                              may queue for a table lock (and block the queries that
                                              queue behind it) before it gives up its place
``PLATFORMDB_MIGRATE_LOCK_RETRIES``   ``10``  attempts after the first, when an attempt fails
                                              on ``lock_not_available`` (55P03) or
                                              ``deadlock_detected`` (40P01)
``PLATFORMDB_MIGRATE_RETRY_BUDGET``   ``10min`` no new attempt starts after this much time in total
``PLATFORMDB_MIGRATE_STATEMENT_TIMEOUT`` ``15min`` ``statement_timeout`` (separate: a slow statement
                                              is never retried)
``PLATFORMDB_MIGRATE_RUNNER_WAIT``    ``5min`` how long a runner waits for another runner's
                                              migration lock before it gives up, naming the holder
``PLATFORMDB_MIGRATE_SCRATCH_URL``    (none)  a PostgreSQL server where ``baseline`` and
                                              ``verify --drift`` may create their scratch database
                                              (default: the target's own server)
===================================== ======= =====================================================
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from platformdb.errors import ConfigError
from platformdb.progress import NO_PROGRESS
from platformdb.progress import Progress as Reporter

ENV_PREFIX = "PLATFORMDB_MIGRATE_"
ENV_LOCK_TIMEOUT = "PLATFORMDB_MIGRATE_LOCK_TIMEOUT"
ENV_LOCK_RETRIES = "PLATFORMDB_MIGRATE_LOCK_RETRIES"
ENV_RETRY_BUDGET = "PLATFORMDB_MIGRATE_RETRY_BUDGET"
ENV_STATEMENT_TIMEOUT = "PLATFORMDB_MIGRATE_STATEMENT_TIMEOUT"
ENV_RUNNER_WAIT = "PLATFORMDB_MIGRATE_RUNNER_WAIT"
ENV_SCRATCH_URL = "PLATFORMDB_MIGRATE_SCRATCH_URL"
KNOWN = (ENV_LOCK_TIMEOUT, ENV_LOCK_RETRIES, ENV_RETRY_BUDGET, ENV_STATEMENT_TIMEOUT,
         ENV_RUNNER_WAIT, ENV_SCRATCH_URL)

_DURATION = re.compile(r"^\s*(?P<n>\d+(?:\.\d+)?)\s*(?P<unit>ms|s|min|h)?\s*$")
_UNITS = {"ms": 1, "s": 1000, "min": 60_000, "h": 3_600_000, None: 1000}

Progress = Callable[[str, int, int | None], None]
"""``(what, done, total)``: a long step (a backfill, an online index) reports how far it is."""


def parse_duration(value: str | float | int, name: str = "duration") -> int:
    """Milliseconds of ``2s``, ``500ms``, ``1.5min``, ``1h`` or a bare number of seconds."""
    if isinstance(value, int | float):
        if value < 0:
            raise ConfigError(f"{name} must not be negative, got {value}")
        return int(value * 1000)
    match = _DURATION.match(value)
    if match is None:
        raise ConfigError(f"{name} must be a duration like 2s, 500ms or 5min; got {value!r}")
    return int(float(match["n"]) * _UNITS[match["unit"]])


@dataclass(frozen=True)
class MigrateOptions:
    """Timeouts, retries and waits of one migration run (see the module's table)."""

    lock_timeout_ms: int = 2000
    lock_retries: int = 10
    retry_budget_s: float = 600.0
    statement_timeout_ms: int = 15 * 60_000
    runner_wait_s: float = 300.0
    backoff_base_s: float = 0.5
    """The first pause between attempts; it doubles each time (with jitter)."""
    backoff_cap_s: float = 30.0
    scratch_url: str | None = None
    progress: Progress | None = None
    reporter: Reporter = field(default=NO_PROGRESS, compare=False, repr=False)
    """Where each migration reports while it runs (:mod:`platformdb.progress`)."""

    def __post_init__(self) -> None:
        if self.lock_timeout_ms < 1:
            raise ConfigError("the lock timeout must be at least 1ms (0 would wait forever)")
        if self.lock_retries < 0:
            raise ConfigError(f"lock retries must be 0 or more, got {self.lock_retries}")
        if self.runner_wait_s < 0 or self.retry_budget_s < 0:
            raise ConfigError("waits and budgets must not be negative")

    @property
    def attempts(self) -> int:
        return self.lock_retries + 1

    @property
    def lock_timeout(self) -> str:
        """As PostgreSQL's ``lock_timeout`` setting takes it."""
        return f"{self.lock_timeout_ms}ms"

    @property
    def statement_timeout(self) -> str:
        return f"{self.statement_timeout_ms}ms"

    def with_overrides(self, **values: object) -> MigrateOptions:
        """A copy with the values that are not ``None`` replaced (CLI options)."""
        return replace(self, **{k: v for k, v in values.items() if v is not None})  # type: ignore[arg-type]

    @classmethod
    def from_env(cls, values: Mapping[str, str]) -> MigrateOptions:
        """Options from ``PLATFORMDB_MIGRATE_*`` values (unknown names are refused)."""
        unknown = sorted(k for k in values if k.startswith(ENV_PREFIX) and k not in KNOWN)
        if unknown:
            raise ConfigError(f"unknown setting {unknown[0]}; known: {', '.join(KNOWN)}")
        found: dict[str, object] = {}
        if values.get(ENV_LOCK_TIMEOUT):
            found["lock_timeout_ms"] = parse_duration(values[ENV_LOCK_TIMEOUT], ENV_LOCK_TIMEOUT)
        if values.get(ENV_LOCK_RETRIES):
            raw = values[ENV_LOCK_RETRIES].strip()
            if not raw.isdigit():
                raise ConfigError(f"{ENV_LOCK_RETRIES} must be a whole number, got {raw!r}")
            found["lock_retries"] = int(raw)
        if values.get(ENV_RETRY_BUDGET):
            found["retry_budget_s"] = parse_duration(values[ENV_RETRY_BUDGET],
                                                     ENV_RETRY_BUDGET) / 1000
        if values.get(ENV_STATEMENT_TIMEOUT):
            found["statement_timeout_ms"] = parse_duration(values[ENV_STATEMENT_TIMEOUT],
                                                           ENV_STATEMENT_TIMEOUT)
        if values.get(ENV_RUNNER_WAIT):
            found["runner_wait_s"] = parse_duration(values[ENV_RUNNER_WAIT],
                                                    ENV_RUNNER_WAIT) / 1000
        if values.get(ENV_SCRATCH_URL):
            found["scratch_url"] = values[ENV_SCRATCH_URL].strip()
        return cls(**found)  # type: ignore[arg-type]
