"""PostgreSQL backup and restore through pg_dump / pg_restore.

The dump, the row counts and the checksums all come from one exported
snapshot, so the manifest describes exactly what the dump holds even while the
platform keeps writing. A restore checks the manifest first, refuses a
non-empty target unless forced, and runs ``pg_restore --single-transaction``:
a restore that fails leaves the target as it was.

Backups and restores need a superuser (or a role with BYPASSRLS): row-level
security is forced on every tenant table.
"""

from __future__ import annotations

import gzip
import re
import subprocess
import threading
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
from psycopg import sql

from platformdb.backup.manifest import (
    Manifest,
    TableState,
    backup_folder,
    new_manifest,
    read_manifest,
)
from platformdb.binaries import pg_tool
from platformdb.errors import (
    CheckFailed,
    Hint,
    PlatformDBError,
    StoreUnavailable,
    ToolFailed,
    ValidationError,
)
from platformdb.journal import child_dies_with_parent, crash_point
from platformdb.postgres import connect
from platformdb.stores.postgres.driver import LEDGER, LEDGER_ID

STORE = "postgresql"
CUSTOM_FILE = "postgresql.dump"
DIRECTORY = "dump"
ROLES_FILE = "roles.sql"

# Order-independent content checksums. Preferred: the sum of each row's 64-bit
# record hash (the hash functions hash partitioning relies on, so they are
# stable across releases and platforms, and fast). A table with a column type
# that has no hash function (json, point...) falls back to the sum of a 60-bit
# slice of each row's md5 over its text form; the prefix says which it is.
TABLE_HASH = sql.SQL(
    "SELECT count(*), coalesce(sum(hash_record_extended(t, 0)), 0) FROM {} AS t"
)
TABLE_TEXT_HASH = sql.SQL(
    "SELECT count(*), coalesce(sum(('x' || substr(md5(t::text), 1, 15))::bit(60)::bigint), 0)"
    " FROM {} AS t"
)
PLATFORM_ROLES = (
    "SELECT rolname FROM pg_roles WHERE rolname LIKE 'platform\\_%' AND NOT rolcanlogin"
    " ORDER BY rolname"
)


@dataclass(frozen=True)
class RestoreReport:
    """Per table: rows restored and whether they match the manifest."""

    target: str
    tables: dict[str, TableState]
    mismatches: list[str]


def run_tool(args: list[str], what: str) -> str:
    return finish_tool(start_tool(args), what)


def start_tool(args: list[str]) -> subprocess.Popen[str]:
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=child_dies_with_parent())
    crash_point(f"started:{Path(args[0]).name}")
    return process


def finish_tool(process: subprocess.Popen[str], what: str) -> str:
    try:
        stdout, stderr = process.communicate()
    except BaseException:  # interrupted: the tool must not run on behind our back
        process.kill()
        process.wait()
        raise
    if process.returncode != 0:
        lines = [line for line in stderr.strip().splitlines() if line.strip()]
        raise tool_failed(what, lines[-1] if lines else f"exit {process.returncode}")
    return stdout


CONNECTION_WORDS = ("could not connect", "connection to server", "password authentication",
                    "no pg_hba.conf entry", "could not translate host name", "timeout expired",
                    "Connection refused", "server closed the connection")


def tool_failed(what: str, message: str) -> PlatformDBError:
    """A PostgreSQL tool's failure: the server out of reach (where to look: the URL), or
    anything else (the tool's own words, no advice about the URL)."""
    if any(word in message for word in CONNECTION_WORDS):
        return StoreUnavailable(f"{what} failed: {message}", store=STORE)
    return ToolFailed(f"{what} failed: {message}")


def tool_version(name: str) -> str:
    return run_tool([pg_tool(name), "--version"], name).strip()


def user_tables(conn: psycopg.Connection[tuple[object, ...]]) -> list[str]:
    """Tables of the public schema, partitioned parents but not their partitions."""
    rows = conn.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition"
        " ORDER BY c.relname").fetchall()
    return [str(row[0]) for row in rows]


def table_states(conn: psycopg.Connection[tuple[object, ...]]) -> dict[str, TableState]:
    """Row count and content checksum of every table, in ``conn``'s transaction."""
    states: dict[str, TableState] = {}
    for table in user_tables(conn):
        name = sql.Identifier("public", table)
        try:
            with conn.transaction():  # a savepoint: a missing hash function is not fatal
                row = conn.execute(TABLE_HASH.format(name)).fetchone()
            prefix = "h"
        except psycopg.errors.UndefinedFunction:
            row = conn.execute(TABLE_TEXT_HASH.format(name)).fetchone()
            prefix = "t"
        assert row is not None
        states[table] = TableState(rows=int(str(row[0])), checksum=f"{prefix}:{row[1]}")
    return states


def ledger_state(conn: psycopg.Connection[tuple[object, ...]]) -> tuple[int | None, list[str]]:
    exists = conn.execute("SELECT to_regclass(%s)", (LEDGER,)).fetchone()
    if exists is None or exists[0] is None:
        return None, []
    rows = conn.execute(sql.SQL("SELECT version, name FROM {} ORDER BY version").format(
        LEDGER_ID)).fetchall()
    labels = [f"{int(str(v)):03d}_{n}" for v, n in rows]
    return (int(str(rows[-1][0])) if rows else None), labels


DATABASE_ACL = (
    "SELECT coalesce(r.rolname, 'PUBLIC'), a.privilege_type"
    " FROM pg_database d, aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a"
    " LEFT JOIN pg_roles r ON r.oid = a.grantee"
    " WHERE d.datname = current_database() AND a.grantee <> d.datdba ORDER BY 1, 2")


def database_acl(conn: psycopg.Connection[tuple[object, ...]]) -> list[list[str]]:
    """Who may CONNECT / create TEMPORARY tables: pg_dump does not carry it, the manifest does."""
    return [[str(grantee), str(privilege)] for grantee, privilege in
            conn.execute(DATABASE_ACL).fetchall()]


def apply_database_acl(url: str, acl: list[list[str]]) -> None:
    """Give the database at ``url`` exactly the database-level grants of ``acl``."""
    name = sql.Identifier(_database(url))
    with connect(_admin_url(url), autocommit=True) as conn:
        conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(name))
        for grantee, privilege in acl:
            if privilege not in ("CONNECT", "TEMPORARY", "CREATE"):
                continue
            who = sql.SQL("PUBLIC") if grantee == "PUBLIC" else sql.Identifier(grantee)
            conn.execute(sql.SQL("GRANT {} ON DATABASE {} TO {}").format(
                sql.SQL(privilege), name, who))


def roles_sql(conn: psycopg.Connection[tuple[object, ...]]) -> str:
    """Idempotent statements that recreate the platform's NOLOGIN roles."""
    lines = ["-- Roles the dump's GRANTs refer to; created when missing."]
    for (name,) in conn.execute(PLATFORM_ROLES).fetchall():
        role = str(name)
        literal = role.replace("'", "''")
        lines.append(
            "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '" + literal + "')"
            " THEN CREATE ROLE \"" + role.replace('"', '""') + "\" NOLOGIN; END IF;"
            " EXCEPTION WHEN duplicate_object THEN NULL; END $$;"
        )
    return "\n".join(lines) + "\n"


def backup(url: str, out_dir: Path, *, directory_format: bool = False, jobs: int = 1) -> Path:
    """Dump the database at ``url`` into a new folder under ``out_dir``."""
    if jobs > 1 and not directory_format:
        raise ValidationError("parallel jobs need the directory format (--format directory)")
    folder = backup_folder(out_dir, STORE)
    with connect(url) as conn:
        # One REPEATABLE READ snapshot, exported to pg_dump: the manifest's
        # counts and checksums describe exactly the rows the dump holds.
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        snapshot = conn.execute(
            "SELECT pg_export_snapshot(), CASE WHEN pg_is_in_recovery()"
            " THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END::text,"
            " statement_timestamp()").fetchone()
        assert snapshot is not None
        target = folder / (DIRECTORY if directory_format else CUSTOM_FILE)
        args = [pg_tool("pg_dump", url), "--snapshot", str(snapshot[0]),
                "-F", "d" if directory_format else "c", "-f", str(target), "-d", url]
        if directory_format:
            args += ["-j", str(jobs)]
        dump = start_tool(args)
        try:
            # The checksums run on the server while pg_dump streams and compresses.
            tables = table_states(conn)
            version, labels = ledger_state(conn)
            server = conn.execute("SHOW server_version").fetchone()
            (folder / ROLES_FILE).write_text(roles_sql(conn))
            acl = database_acl(conn)
        except BaseException:
            dump.kill()
            dump.wait()
            raise
        finish_tool(dump, "pg_dump")
        conn.rollback()
    manifest = new_manifest(
        STORE,
        tools={"pg_dump": tool_version("pg_dump"), "server": str(server[0] if server else "")},
        schema_version=version, migrations=labels, tables=tables,
        extra={"format": "directory" if directory_format else "custom",
               "database_acl": acl,
               # the point in time the dump shows: its snapshot, the WAL position then
               "point": {"snapshot": str(snapshot[0]), "lsn": str(snapshot[1]),
                         "taken_at": snapshot[2].isoformat()}},
    )
    manifest.write(folder)
    return folder


def _admin_url(url: str) -> str:
    return urlsplit(url)._replace(path="/postgres").geturl()


def _database(url: str) -> str:
    name = urlsplit(url).path.lstrip("/")
    if not name:
        raise ValidationError(f"the restore target URL names no database: {url}")
    return name


def _ensure_database(url: str) -> bool:
    """Create the target database when missing; True when it was created."""
    name = _database(url)
    with connect(_admin_url(url), autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            return False
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return True


def _drop_database(url: str) -> None:
    with connect(_admin_url(url), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(_database(url))))


def is_empty(url: str) -> bool:
    with connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')"
            " AND n.nspname NOT LIKE 'pg\\_temp%' AND c.relkind IN ('r', 'p', 'v', 'm', 'S')"
        ).fetchone()
    return row is not None and row[0] == 0


@dataclass(frozen=True)
class Staged:
    """A backup restored and checked in a scratch database beside the target."""

    target: str
    scratch: str
    report: RestoreReport


@dataclass(frozen=True)
class Switched:
    """The target now holds the staged data; ``previous`` (if any) is kept aside."""

    target: str
    previous: str | None
    scratch: str | None = None
    """The staged database's name before the switch (where :func:`undo` puts it back)."""


def restore(folder: Path, url: str, *, force: bool = False, verify: bool = False) -> RestoreReport:
    """Restore the backup in ``folder`` into the database at ``url``.

    The backup is restored (and verified) in a scratch database beside the
    target first, then swapped in by renaming: a restore that fails leaves the
    target exactly as it was. A non-empty target is replaced only with ``force``.
    """
    staged = stage(folder, url, force=force, verify=verify)
    try:
        switched = switch(staged)
    except BaseException:
        discard(staged)
        raise
    commit(switched)
    return RestoreReport(url, staged.report.tables, staged.report.mismatches)


def stage(folder: Path, url: str, *, force: bool = False, verify: bool = False) -> Staged:
    """Restore ``folder`` into a new scratch database and check it against the manifest.

    ``folder`` may also be a ``pg_dump`` file (:func:`stage_dump`). Nothing is
    changed in the target; :func:`switch` swaps the scratch in.
    """
    if folder.is_file():
        return stage_dump(folder, url, force=force)
    manifest = read_manifest(folder, STORE)
    dump = folder / (DIRECTORY if manifest.extra.get("format") == "directory" else CUSTOM_FILE)
    name = _database(url)
    if _exists(url) and not is_empty(url) and not force:
        raise ValidationError(
            f"target database {name} is not empty; restore into a new database",
            hint=Hint(flag="--force", does="to replace its contents"))
    scratch = _with_database(url, f"{name[:40]}_restore_{uuid.uuid4().hex[:8]}")
    try:  # an interruption during CREATE DATABASE must not leave the scratch behind either
        _ensure_database(scratch)
        _restore_into(folder, dump, scratch)
        if "database_acl" in manifest.extra:
            apply_database_acl(scratch, list(manifest.extra["database_acl"]))
        report = check_restored(manifest, scratch, verify)
    except BaseException:
        _drop_database(scratch)
        raise
    return Staged(url, scratch, report)


# ------------------------------------------------------------------ pg_dump files

PLAIN_HEADER = b"-- PostgreSQL database dump"
_OWNER = re.compile(r"^ALTER [A-Z ]+ .+ OWNER TO .+;$")
_COPY = re.compile(r"^COPY .+ FROM stdin;$")
_ROLE_GRANTEE = re.compile(r"\b(?:TO|FROM)\s+\"?(platform_[a-z0-9_]+)\"?", re.IGNORECASE)


def dump_kind(path: Path) -> str:
    """``custom`` (``pg_dump -Fc``), ``tar`` (``-Ft``), ``plain`` (``pg_dump > file.sql``,
    gzip-compressed or not) -- or :class:`ValidationError` for anything else."""
    with open(path, "rb") as handle:
        head = handle.read(512)
    if head.startswith(b"PGDMP"):
        return "custom"
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "tar"
    if head.startswith(b"\x1f\x8b"):
        with gzip.open(path, "rb") as unzipped:
            head = unzipped.read(512)
        if _looks_plain(head):
            return "plain"
    elif _looks_plain(head):
        return "plain"
    raise ValidationError(f"{path} is not a pg_dump file (plain SQL, custom or tar format) nor "
                          "a platformdb backup")


PLAIN_END = b"-- PostgreSQL database dump complete"


def _check_complete(path: Path) -> None:
    """Refuse a plain dump that pg_dump started (its header) but that does not end with
    pg_dump's last line: a file cut short would restore part of a database (psql runs
    what it gets; a cut at a line boundary may even load without an error)."""
    head = b""
    tail: list[bytes] = []
    try:
        for raw in _plain_lines(path):
            if len(head) < 512:
                head += raw
            if raw.strip():
                tail = [*tail[-4:], raw.strip()]
    except (EOFError, OSError, zlib.error) as exc:  # a gzip stream that ends early
        raise ValidationError(f"{path} is truncated or damaged ({exc}); nothing was "
                              "restored: use a complete copy of the dump") from exc
    if PLAIN_HEADER + b"\n" in head and PLAIN_END not in tail:
        raise ValidationError(f"{path} ends before pg_dump's closing line ({PLAIN_END.decode()}"
                              "): the file is truncated; nothing was restored, use a complete "
                              "copy of the dump")


def _looks_plain(head: bytes) -> bool:
    text = head.lstrip(b"\xef\xbb\xbf").lstrip()
    return text.startswith(PLAIN_HEADER) or text.startswith(b"--") or text[:6].upper() in (
        b"SET ST", b"CREATE", b"BEGIN;")


def stage_dump(path: Path, url: str, *, force: bool = False) -> Staged:
    """Restore a ``pg_dump`` file into a new scratch database, in one transaction.

    The checks a dump without a manifest allows: it is a dump (plain SQL, custom or tar
    format); it restores completely in one transaction (``psql --single-transaction``
    with ``ON_ERROR_STOP`` / ``pg_restore --single-transaction --exit-on-error``);
    ownership goes to the restoring role (``--no-owner``; a plain dump's ``ALTER ...
    OWNER TO`` lines are skipped); the platform's roles it grants to are created
    ``NOLOGIN`` when missing; and the result holds the migration ledger
    (``platformdb.schema_migrations``), i.e. it is a platform database. The target keeps
    its database-level grants (``CONNECT``/``TEMPORARY``, which a dump does not carry).
    Row counts are reported as found (no manifest to compare with).
    """
    found = dump_kind(path)
    if found == "plain":
        _check_complete(path)
    name = _database(url)
    if _exists(url) and not is_empty(url) and not force:
        raise ValidationError(
            f"target database {name} is not empty; restore into a new database",
            hint=Hint(flag="--force", does="to replace its contents"))
    acl = _target_acl(url)
    scratch = _with_database(url, f"{name[:40]}_restore_{uuid.uuid4().hex[:8]}")
    try:  # an interruption during CREATE DATABASE must not leave the scratch behind either
        _ensure_database(scratch)
        # the tools of the server's own major version (the scratch database exists now)
        _create_platform_roles(scratch, _granted_roles(path, found, scratch))
        if found == "plain":
            _psql_restore(path, scratch)
        else:
            run_tool([pg_tool("pg_restore", scratch), "--single-transaction", "--exit-on-error",
                      "--no-owner", "-d", scratch, str(path)], "pg_restore")
        labels = _ledger_of(scratch)
        if not labels:
            raise ValidationError(
                f"{path.name} restored, but it holds no migration ledger ({LEDGER}): not a "
                "platform database; nothing was changed")
        if acl is not None:
            apply_database_acl(scratch, acl)
        with connect(scratch) as conn:
            tables = table_states(conn)
    except BaseException:
        _drop_database(scratch)
        raise
    return Staged(url, scratch, RestoreReport(scratch, tables, []))


def _target_acl(url: str) -> list[list[str]] | None:
    if not _exists(url):
        return None
    with connect(url) as conn:
        return database_acl(conn)


def _ledger_of(url: str) -> list[str]:
    with connect(url) as conn:
        return ledger_state(conn)[1]


def _plain_lines(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as raw:
        compressed = raw.read(2) == b"\x1f\x8b"
    with (gzip.open(path, "rb") if compressed else open(path, "rb")) as handle:
        yield from handle


def _granted_roles(path: Path, found: str, url: str) -> set[str]:
    """The platform roles (``platform_*``) the dump grants to or revokes from."""
    if found == "plain":
        lines: Iterator[str] = (raw.decode("utf-8", "replace") for raw in _plain_lines(path)
                                if raw.startswith((b"GRANT ", b"REVOKE ", b"ALTER DEFAULT")))
    else:
        listing = run_tool([pg_tool("pg_restore", url), "--schema-only", "-f", "-", str(path)],
                           "pg_restore --schema-only")
        lines = (line for line in listing.splitlines()
                 if line.startswith(("GRANT ", "REVOKE ", "ALTER DEFAULT")))
    return {match for line in lines for match in _ROLE_GRANTEE.findall(line)}


def _create_platform_roles(url: str, names: set[str]) -> None:
    with connect(url, autocommit=True) as conn:
        for role in sorted(names):
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
                continue
            try:
                conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
            except (psycopg.errors.DuplicateObject, psycopg.errors.UniqueViolation):
                continue  # created meanwhile: roles are cluster-wide


def _psql_restore(path: Path, url: str) -> None:
    """A plain dump through psql in one transaction, its ``OWNER TO`` lines left out."""
    process = subprocess.Popen(
        [pg_tool("psql", url), "-X", "-q", "--single-transaction", "-v", "ON_ERROR_STOP=1",
         "-d", url, "-f", "-"],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        preexec_fn=child_dies_with_parent())
    assert process.stdin is not None and process.stderr is not None
    stderr, chunks = process.stderr, []
    drain = threading.Thread(target=lambda: chunks.append(stderr.read()), daemon=True)
    drain.start()  # psql's messages must never fill a pipe while we feed it
    in_copy = False
    try:
        for raw in _plain_lines(path):
            line = raw.rstrip(b"\r\n").decode("utf-8", "surrogateescape")
            if in_copy:
                in_copy = line != "\\."
            elif _COPY.match(line):
                in_copy = True
            elif _OWNER.match(line):
                continue
            process.stdin.write(raw)
        process.stdin.close()
    except BrokenPipeError:
        pass  # psql stopped at an error: its message follows
    except BaseException:  # interrupted: psql must not run on behind our back
        process.kill()
        process.wait()
        raise
    code = process.wait()
    drain.join()
    errors = b"".join(chunks).decode("utf-8", "replace")
    if code != 0:
        lines = [line for line in errors.strip().splitlines() if line.strip()]
        message = next((line for line in lines if "ERROR" in line), lines[-1] if lines else "")
        failure = tool_failed("psql restore", message or f"exit {code}")
        if isinstance(failure, StoreUnavailable):
            raise failure
        raise ValidationError(f"{path.name} did not restore, nothing was restored: {message}"
                              " (is the file complete? a dump cut short ends mid-statement)")


def aside_name(target_url: str) -> str:
    """A fresh name for the target while a restore keeps it aside."""
    return f"{_database(target_url)[:40]}_previous_{uuid.uuid4().hex[:8]}"


def switch(staged: Staged, previous: str | None = None) -> Switched:
    """Put the staged database in the target's place; the old target is renamed aside
    (to ``previous``, or a fresh name).

    Both renames run in ONE transaction (PostgreSQL allows ``ALTER DATABASE ... RENAME``
    in a transaction block): the target's name always resolves to the old database or
    the new one, never to nothing, even if the process dies between them.
    """
    name = _database(staged.target)
    aside = previous or aside_name(staged.target)
    with connect(_admin_url(staged.target), autocommit=True) as conn:
        present = _present(conn, name)
        if present:
            _close_database(conn, name)
        crash_point("postgresql:closed")
        try:
            _swap(conn, name, _database(staged.scratch), aside if present else None)
        except BaseException:
            if present:
                _open_database(conn, name)
            raise
    return Switched(staged.target, aside if present else None, _database(staged.scratch))


def _swap(conn: psycopg.Connection[tuple[object, ...]], name: str, incoming: str,
          aside: str | None) -> None:
    """In one transaction: ``name`` to ``aside`` (when given), ``incoming`` to ``name``."""
    with conn.transaction():
        if aside is not None:
            conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                sql.Identifier(name), sql.Identifier(aside)))
        crash_point("postgresql:renamed-aside")  # dies inside the transaction: rolled back
        conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
            sql.Identifier(incoming), sql.Identifier(name)))


def _present(conn: psycopg.Connection[tuple[object, ...]], name: str) -> bool:
    return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                        (name,)).fetchone() is not None


def undo(switched: Switched) -> None:
    """Put the previous target back (the restored data is dropped): the restored database
    goes to its scratch name and the previous one back to the target's, in one
    transaction, then the restored copy is dropped."""
    name = _database(switched.target)
    scratch = switched.scratch or f"{name[:40]}_restore_{uuid.uuid4().hex[:8]}"
    with connect(_admin_url(switched.target), autocommit=True) as conn:
        _put_back(conn, name, scratch, switched.previous)


def _put_back(conn: psycopg.Connection[tuple[object, ...]], name: str, scratch: str,
              previous: str | None) -> None:
    if _present(conn, name):
        _close_database(conn, name)
        if previous is None:  # there was no target before: the restore brought it
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))
            return
        _swap(conn, name, previous, scratch)
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(scratch)))
    elif previous is not None and _present(conn, previous):
        conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
            sql.Identifier(previous), sql.Identifier(name)))
    _open_database(conn, name)


def commit(switched: Switched) -> None:
    """Drop the previous target: the switch is final."""
    if switched.previous is not None:
        _drop_database(_with_database(switched.target, switched.previous))


def discard(staged: Staged) -> None:
    """Drop a staged scratch database that will not be switched in."""
    _drop_database(staged.scratch)


def journal_record(staged: Staged, previous: str) -> dict[str, object]:
    """What a recovery needs to finish or undo this restore: the database names."""
    return {"target": _database(staged.target), "scratch": _database(staged.scratch),
            "previous": previous, "names": [_database(staged.scratch), previous]}


def recover(url: str, record: dict[str, object], *, forward: bool) -> str:
    """Finish (``forward``) or roll back the restore ``record`` describes, from whatever
    state a killed process left: every name is looked up, nothing is assumed. What was
    done, in a few words."""
    name, scratch = str(record["target"]), str(record.get("scratch") or "")
    previous = str(record.get("previous") or "")
    with connect(_admin_url(url), autocommit=True) as conn:
        staged = bool(scratch) and _present(conn, scratch)
        aside = bool(previous) and _present(conn, previous)
        if forward:
            if staged:
                present = _present(conn, name)
                if present:
                    _close_database(conn, name)
                _swap(conn, name, scratch, previous if present else None)
                aside = present
            if aside:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(previous)))
            _open_database(conn, name)
            return "switched in" if staged else "already switched in"
        if staged:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(scratch)))
            if _present(conn, name):
                _open_database(conn, name)
            return "staged copy dropped"
        if aside:
            _put_back(conn, name, scratch or f"{name[:40]}_restore_{uuid.uuid4().hex[:8]}",
                      previous)
            return "previous contents put back"
        if record.get("phase") in ("switching", "switched") and not record.get("had_target"):
            _put_back(conn, name, scratch, None)
            return "restored database dropped (there was none before)"
        if _present(conn, name):
            _open_database(conn, name)
        return "nothing to do"


LEFTOVER = r"_(restore|previous)_[0-9a-f]{8}$"


def leftovers(url: str) -> list[str]:
    """Scratch and aside databases of restores (``<name>_restore_<hex>``,
    ``<name>_previous_<hex>``) on the server of ``url``."""
    with connect(_admin_url(url), autocommit=True) as conn:
        return [str(row[0]) for row in conn.execute(
            "SELECT datname FROM pg_database WHERE datname ~ %s ORDER BY 1", (LEFTOVER,))]


def drop_leftovers(url: str, names: list[str]) -> None:
    with connect(_admin_url(url), autocommit=True) as conn:
        for name in names:
            if re.search(LEFTOVER, name):
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(name)))


def _exists(url: str) -> bool:
    with connect(_admin_url(url), autocommit=True) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                            (_database(url),)).fetchone() is not None


def _close_database(conn: psycopg.Connection[tuple[object, ...]], name: str) -> None:
    """Refuse new connections to ``name`` and end the open ones (a rename needs none)."""
    conn.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(
        sql.Identifier(name)))
    conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                 " WHERE datname = %s AND pid <> pg_backend_pid()", (name,))


def _open_database(conn: psycopg.Connection[tuple[object, ...]], name: str) -> None:
    conn.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(
        sql.Identifier(name)))


def _restore_into(folder: Path, dump: Path, url: str) -> None:
    run_tool([pg_tool("psql", url), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url,
              "-f", str(folder / ROLES_FILE)], "creating roles")
    run_tool([pg_tool("pg_restore", url), "--single-transaction", "--exit-on-error",
              "--no-owner", "-d", url, str(dump)], "pg_restore")


def _with_database(url: str, name: str) -> str:
    return urlsplit(url)._replace(path=f"/{name}").geturl()


def check_restored(manifest: Manifest, url: str, verify: bool) -> RestoreReport:
    with connect(url) as conn:
        restored = table_states(conn)
    mismatches = [
        f"{table}: expected {state.rows} rows (checksum {state.checksum}), found "
        f"{restored[table].rows if table in restored else 'no table'}"
        for table, state in manifest.tables.items()
        if restored.get(table) != state
    ]
    if verify and mismatches:
        raise CheckFailed(f"restored data differs from the manifest: {mismatches[0]}")
    return RestoreReport(url, restored, mismatches)
