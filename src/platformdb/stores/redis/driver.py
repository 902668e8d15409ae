"""The Redis driver of the migration engine: the ``platformdb`` functions library.

Redis has no schema to migrate; what ``migrate up`` installs there is code,
the Redis Functions library assembled from ``redis/scripts``
(:mod:`platformdb.redis.functions`). To the engine it is one *repeatable*
migration (Flyway's term): ``001`` named after the library and its version,
whose "SQL" is the library's code and whose checksum is the code's SHA-256.
Unlike a numbered SQL file it is never frozen: when the code changes, ``up``
loads it again (``FUNCTION LOAD REPLACE`` on every primary, atomic per
server).

- **Ledger**: the hash ``platformdb:migrations:redis`` (no key prefix: the
  library is server-wide) records the version, checksum, name, when, how
  long and by whom of the last load.
- **Status**: ``pending`` (never loaded), ``applied`` (the ledger and every
  primary hold this checkout's code), ``changed`` (the checkout's code
  differs from what was loaded: an upgrade, or an older checkout) or
  ``not on server`` (recorded, but a primary lacks the code: a failover to a
  fresh node, a new shard, ``FUNCTION FLUSH``). ``up`` fixes all three.
- **Lock**: ``SET platformdb:migrations:redis:lock <token> NX PX 60000``,
  released with ``WATCH``/``MULTI`` only by its holder.
- **Rights**: ``platformdb-migrate`` (``acl_users.redis``) may load and list
  functions and touch these two keys, nothing else.
- **No down**: the previous library is whatever an older checkout's ``up``
  loads.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from redis.exceptions import RedisError, WatchError

from platformdb.errors import MigrationError, StoreUnavailable
from platformdb.migrate.base import AppliedMigration, Migration
from platformdb.redis import client as redis_client
from platformdb.redis import codec, functions
from platformdb.redis.client import SyncClient

STORE = "redis"
LEDGER = "platformdb:migrations:redis"
LOCK = f"{LEDGER}:lock"
LOCK_TTL_MS = 60_000
LOCK_WAIT = 60.0
NO_DOWN = ("the functions library is replaced, never rolled back: load an older library "
           "with `migrate up` from the checkout that has it")


def migrations(lib: functions.Library | None = None) -> list[Migration]:
    """The library as the engine's one (repeatable) Redis migration."""
    lib = lib or functions.library()
    return [Migration(version=1, name=f"{lib.name}_functions_v{lib.version}",
                      path=lib.directory / functions.PREAMBLE, sql=lib.code,
                      no_down_reason=NO_DOWN, repeatable=True)]


class RedisDriver:
    """The migration driver of one Redis server or Cluster."""

    store = STORE

    def __init__(self, url: str | None = None, *, client: SyncClient | None = None) -> None:
        if client is None:
            if url is None:
                raise MigrationError("RedisDriver needs a URL or a client")
            client = redis_client.connect(url)
            self._own = True
        else:
            self._own = False
        self.client = client

    def ping(self) -> None:
        redis_client.ping(self.client)

    def validate(self, migration: Migration, text: str) -> None:
        if not text.startswith(f"#!lua name={functions.LIBRARY}\n"):
            raise MigrationError(f"{migration.path}: not the {functions.LIBRARY} functions library")

    @contextmanager
    def lock(self) -> Iterator[None]:
        token = secrets.token_hex(16)
        deadline = time.monotonic() + LOCK_WAIT
        try:
            while not self.client.set(LOCK, token, nx=True, px=LOCK_TTL_MS):
                if time.monotonic() > deadline:
                    raise MigrationError(
                        f"another runner holds the Redis migration lock ({LOCK}) for over "
                        f"{LOCK_WAIT:.0f}s; it expires by itself {LOCK_TTL_MS // 1000}s after "
                        "that runner stopped renewing it")
                time.sleep(0.1)
        except RedisError as exc:
            raise StoreUnavailable(f"Redis refused the migration lock: {exc}") from exc
        try:
            yield
        finally:
            self._unlock(token)

    def _unlock(self, token: str) -> None:
        try:
            with self.client.pipeline(transaction=True) as pipe:
                pipe.watch(LOCK)
                if codec.text(pipe.get(LOCK) or b"") != token:
                    return  # expired and taken over: not ours to delete
                pipe.multi()
                pipe.delete(LOCK)
                pipe.execute()
        except WatchError:
            return
        except RedisError as exc:
            raise StoreUnavailable(f"Redis refused to release the migration lock: {exc}") from exc

    def ensure_ledger(self) -> None:
        """Nothing to create: the ledger hash appears with its first entry."""

    def _ledger(self) -> dict[str, str]:
        try:
            raw = self.client.hgetall(LEDGER)
        except RedisError as exc:
            raise StoreUnavailable(f"Redis refused to read the ledger {LEDGER}: {exc}") from exc
        return {codec.text(k): codec.text(v) for k, v in raw.items()}

    def applied(self) -> list[AppliedMigration]:
        entry = self._ledger()
        if "checksum" not in entry:
            return []
        nodes = functions.on_server(self.client)
        return [AppliedMigration(
            version=int(entry.get("version", "1")),
            name=entry.get("name", functions.LIBRARY),
            checksum=entry["checksum"],
            applied_at=datetime.fromisoformat(entry["applied_at"]),
            duration_ms=int(entry.get("duration_ms", "0")),
            applied_by=entry.get("applied_by", "unknown"),
            on_server=all(node.checksum == entry.get("library_checksum") for node in nodes),
        )]

    def apply(self, migration: Migration, applied_by: str) -> int:
        started = time.monotonic()
        functions.load(self.client, migration.sql)
        duration = int((time.monotonic() - started) * 1000)
        entry = {
            "version": str(migration.version),
            "name": migration.name,
            "checksum": migration.checksum,
            "library_checksum": functions.checksum(migration.sql),
            "applied_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "duration_ms": str(duration),
            "applied_by": applied_by,
        }
        try:
            self.client.hset(LEDGER, mapping=entry)  # type: ignore[arg-type]
        except RedisError as exc:
            raise StoreUnavailable(
                f"the library was loaded but the ledger {LEDGER} could not be written: {exc}"
            ) from exc
        return duration

    def revert(self, migration: Migration, down_sql: str) -> int:
        raise MigrationError(NO_DOWN)

    def dump_schema(self) -> str:
        """The library as the server holds it: one line per primary."""
        return "\n".join(f"-- {node.node}: library {functions.LIBRARY} "
                         f"v{node.version if node.version is not None else '-'} "
                         f"sha256 {node.checksum or '(not loaded)'}"
                         for node in functions.on_server(self.client)) + "\n"

    def close(self) -> None:
        if self._own:
            self.client.close()
