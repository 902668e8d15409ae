"""PostgreSQL backup and restore through pg_dump / pg_restore.

The dump, the row counts and the checksums all come from one exported
snapshot, so the manifest describes exactly what the dump holds even while the
platform keeps writing. A restore checks the manifest first, refuses a
non-empty target unless forced, and runs ``pg_restore -j N`` into a scratch
database beside the target, which is switched in only once complete and
checked: a restore that fails leaves the target as it was. Owners, grants and
the platform's roles come out as the source's (:func:`_restore_archive`).
Client programs never see a password in their arguments (:func:`spawn`).

Backups and restores need a superuser (or a role with BYPASSRLS): row-level
security is forced on every tenant table.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import re
import subprocess
import threading
import uuid
import weakref
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import psycopg
from psycopg import sql

from platformdb.backup.manifest import (
    MANIFEST,
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
from platformdb.stores.postgres.console import credentials
from platformdb.stores.postgres.driver import LEDGER, LEDGER_ID, scratch_database

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


@dataclass(frozen=True)
class RestoreReport:
    """Per table: rows restored and whether they match the manifest."""

    target: str
    tables: dict[str, TableState]
    mismatches: list[str]


def run_tool(args: list[str], what: str) -> str:
    return finish_tool(start_tool(args), what)


def start_tool(args: list[str]) -> subprocess.Popen[str]:
    """Start a PostgreSQL client program (see :func:`spawn`), its output captured as text."""
    process = spawn(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    crash_point(f"started:{Path(args[0]).name}")
    return process


def spawn(args: list[str], **options: Any) -> subprocess.Popen[Any]:
    """Start ``args``, a PostgreSQL client program: a connection URL among them loses its
    password, which the child reads from a private 0600 passfile (``PGPASSFILE``, removed
    when the child is finished with, :func:`finish_tool` / :func:`stop_tool`); the child is
    killed when this process dies (``PR_SET_PDEATHSIG``), so no ``pg_restore`` runs on
    behind a killed restore. The signal follows the *thread* that starts the child: start
    and wait for it in the same thread (as :func:`run_tool` does)."""
    urls = [arg for arg in args if arg.startswith(("postgresql://", "postgres://"))]
    stack = contextlib.ExitStack()
    env: dict[str, str] | None = None
    if urls:
        bare, env = stack.enter_context(credentials(urls[0]))
        args = [bare if arg == urls[0] else arg for arg in args]
    try:
        process: subprocess.Popen[Any] = subprocess.Popen(
            args, env=env, preexec_fn=child_dies_with_parent(), **options)
    except BaseException:
        stack.close()
        raise
    weakref.finalize(process, stack.close)
    _CREDENTIALS[process.pid] = stack
    return process


_CREDENTIALS: dict[int, contextlib.ExitStack] = {}


def _forget(process: subprocess.Popen[Any]) -> None:
    stack = _CREDENTIALS.pop(process.pid, None)
    if stack is not None:
        stack.close()


def stop_tool(process: subprocess.Popen[Any]) -> None:
    """Kill ``process`` (interrupted: it must not run on behind our back) and clean up."""
    process.kill()
    process.wait()
    _forget(process)


def finish_tool(process: subprocess.Popen[str], what: str) -> str:
    try:
        stdout, stderr = process.communicate()
    except BaseException:  # interrupted: the tool must not run on behind our back
        stop_tool(process)
        raise
    _forget(process)
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
    return {table: table_state(conn, table) for table in user_tables(conn)}


def table_state(conn: psycopg.Connection[tuple[object, ...]], table: str) -> TableState:
    name = sql.Identifier("public", table)
    try:
        with conn.transaction():  # a savepoint: a missing hash function is not fatal
            row = conn.execute(TABLE_HASH.format(name)).fetchone()
        prefix = "h"
    except psycopg.errors.UndefinedFunction:
        row = conn.execute(TABLE_TEXT_HASH.format(name)).fetchone()
        prefix = "t"
    assert row is not None
    return TableState(rows=int(str(row[0])), checksum=f"{prefix}:{row[1]}")


def table_states_parallel(url: str, jobs: int) -> dict[str, TableState]:
    """:func:`table_states` of the (quiet: nothing else writes it) database at ``url``,
    ``jobs`` tables at a time on connections of their own, largest first."""
    with connect(url) as conn:
        tables = user_tables(conn)
        sizes = {str(name): int(str(size)) for name, size in conn.execute(
            "SELECT c.relname, coalesce((SELECT sum(pg_relation_size(p.relid))"
            " FROM pg_partition_tree(c.oid) p), 0) FROM pg_class c JOIN pg_namespace n"
            " ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relname = ANY(%s)",
            (tables,)).fetchall()}
    if jobs <= 1 or len(tables) <= 1:
        with connect(url) as conn:
            return table_states(conn)
    work = sorted(tables, key=lambda table: -sizes.get(table, 0))
    lock = threading.Lock()
    states: dict[str, TableState] = {}

    def worker() -> None:
        with connect(url) as conn:
            while True:
                with lock:
                    if not work:
                        return
                    table = work.pop(0)
                found = table_state(conn, table)
                with lock:
                    states[table] = found

    with ThreadPoolExecutor(max_workers=min(jobs, len(tables))) as pool:
        for future in [pool.submit(worker) for _ in range(min(jobs, len(tables)))]:
            future.result()
    return {table: states[table] for table in tables}


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


PLATFORM_ROLE_DETAILS = (
    "SELECT r.rolname, r.rolinherit, r.rolbypassrls, ARRAY(SELECT g.rolname FROM pg_auth_members m"
    " JOIN pg_roles g ON g.oid = m.roleid WHERE m.member = r.oid AND g.rolname LIKE 'platform\\_%'"
    " ORDER BY 1) FROM pg_roles r WHERE r.rolname LIKE 'platform\\_%' AND NOT r.rolcanlogin"
    " ORDER BY r.rolname")


def roles_sql(conn: psycopg.Connection[tuple[object, ...]]) -> str:
    """Idempotent statements that recreate the platform's NOLOGIN roles (with their
    INHERIT / BYPASSRLS attributes and their memberships in each other) where missing.
    A role that exists is left as it is: roles belong to the whole server."""
    lines = ["-- Roles the dump's owners and GRANTs refer to; created when missing."]
    memberships: list[tuple[str, str]] = []
    for name, inherit, bypass, groups in conn.execute(PLATFORM_ROLE_DETAILS).fetchall():
        role = str(name)
        attributes = " NOLOGIN" + ("" if inherit else " NOINHERIT") + (" BYPASSRLS" if bypass
                                                                       else "")
        lines.append(
            "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = " + _literal(role)
            + ") THEN CREATE ROLE " + _ident(role) + attributes + "; END IF;"
            " EXCEPTION WHEN duplicate_object THEN NULL; END $$;")
        memberships += [(str(group), role) for group in cast(list[object], groups or [])]
    for group, member in memberships:
        lines.append(
            "DO $$ BEGIN IF NOT pg_has_role(" + _literal(member) + ", " + _literal(group)
            + ", 'MEMBER') THEN GRANT " + _ident(group) + " TO " + _ident(member)
            + "; END IF; END $$;")
    return "\n".join(lines) + "\n"


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _ident(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


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
            owner = conn.execute("SELECT pg_get_userbyid(datdba) FROM pg_database"
                                 " WHERE datname = current_database()").fetchone()
        except BaseException:
            stop_tool(dump)
            raise
        finish_tool(dump, "pg_dump")
        conn.rollback()
    manifest = new_manifest(
        STORE,
        tools={"pg_dump": tool_version("pg_dump"), "server": str(server[0] if server else "")},
        schema_version=version, migrations=labels, tables=tables,
        extra={"format": "directory" if directory_format else "custom",
               "database_acl": acl,
               "database_owner": str(owner[0]) if owner else "",
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


def default_jobs() -> int:
    """Parallel ``pg_restore`` jobs when none are asked for: one per CPU."""
    return max(1, os.cpu_count() or 1)


def restore(folder: Path, url: str, *, force: bool = False, verify: bool = False,
            jobs: int | None = None) -> RestoreReport:
    """Restore the backup in ``folder`` into the database at ``url``.

    The backup is restored (and verified) in a scratch database beside the
    target first, then swapped in by renaming: a restore that fails leaves the
    target exactly as it was. A non-empty target is replaced only with ``force``.
    """
    staged = stage(folder, url, force=force, verify=verify, jobs=jobs)
    try:
        switched = switch(staged)
    except BaseException:
        discard(staged)
        raise
    commit(switched)
    return RestoreReport(url, staged.report.tables, staged.report.mismatches)


def stage(folder: Path, url: str, *, force: bool = False, verify: bool = False,
          jobs: int | None = None) -> Staged:
    """Restore ``folder`` into a new scratch database and check it against the manifest.

    ``folder`` may also be a ``pg_dump`` file or directory (:func:`stage_dump`). Nothing
    is changed in the target; :func:`switch` swaps the scratch in. The scratch is filled
    by ``pg_restore -j jobs`` (default: one per CPU): it is a database of its own, so a
    failure drops it and nothing else was touched.
    """
    if folder.is_file() or (folder.is_dir() and (folder / "toc.dat").is_file()
                            and not (folder / MANIFEST).is_file()):
        return stage_dump(folder, url, force=force, jobs=jobs)
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
        roles = folder / ROLES_FILE
        _restore_archive(dump, scratch, jobs=jobs,
                         roles=roles.read_text() if roles.is_file() else None)
        if "database_acl" in manifest.extra:
            apply_database_acl(scratch, list(manifest.extra["database_acl"]))
        _apply_database_owner(scratch, manifest.extra.get("database_owner"))
        report = check_restored(manifest, scratch, verify, jobs)
    except BaseException:
        _drop_database(scratch)
        raise
    return Staged(url, scratch, report)


def _restore_archive(dump: Path, url: str, *, jobs: int | None, roles: str | None = None,
                     parallel: bool = True) -> None:
    """A custom / directory / tar archive into the (new, empty) database at ``url``, exactly:

    1. the platform's roles: ``roles`` (a backup's ``roles.sql``: attributes and
       memberships), then every ``platform_*`` role the archive owns objects by or grants
       to, created ``NOLOGIN`` when missing;
    2. ``pg_restore --no-owner -j jobs --exit-on-error``: everything (grants, default
       privileges, RLS flags, functions with their ``SET search_path``), owned by the
       restoring role, which is the migration owner;
    3. the ``ALTER ... OWNER TO platform_*`` statements of the archive, in one
       transaction: the SECURITY DEFINER functions and the dictionary views get their
       owners back, and PostgreSQL moves their grants over to the new owner, so the
       ACLs are the source's.
    """
    statements = _schema_lines(dump, "archive", url)
    with connect(url, autocommit=True) as conn:
        if roles:
            conn.execute(roles.encode())
    _create_platform_roles(url, _granted_roles(statements))
    count = (jobs or default_jobs()) if parallel else 1
    args = [pg_tool("pg_restore", url), "--no-owner", "--exit-on-error", "-d", url]
    args += ["-j", str(count)] if count > 1 else ["--single-transaction"]
    run_tool([*args, str(dump)], "pg_restore")
    _apply_owners(url, statements)


def _apply_owners(url: str, lines: list[str]) -> None:
    """Give objects owned by platform roles their owners back, then replay their grants:
    pg_dump wrote them relative to that owner (e.g. ``REVOKE ALL ... FROM`` the owner of
    a view that only others read), which a restoring owner made a no-op."""
    owners = _owner_statements(lines)
    if not owners:
        return
    objects = [_OWNED.sub("", line) for line in owners]
    grants = [line for line in lines if line.startswith(("GRANT ", "REVOKE "))
              and any(f" {name} TO " in line or f" {name} FROM " in line for name in objects)]
    with connect(url) as conn:
        for statement in [*owners, *grants]:
            conn.execute(statement.encode())


def _apply_database_owner(url: str, owner: object) -> None:
    """Give the database the source's owner when that role exists here (and is not us)."""
    if not isinstance(owner, str) or not owner:
        return
    with connect(_admin_url(url), autocommit=True) as conn:
        row = conn.execute("SELECT current_user, EXISTS (SELECT FROM pg_roles WHERE rolname"
                           " = %s)", (owner,)).fetchone()
        if row is None or row[0] == owner or not row[1]:
            return
        conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
            sql.Identifier(_database(url)), sql.Identifier(owner)))


# ------------------------------------------------------------------ pg_dump files

PLAIN_HEADER = b"-- PostgreSQL database dump"
_OWNER = re.compile(r"^ALTER [A-Z ]+ .+ OWNER TO (.+);$")
_COPY = re.compile(r"^COPY .+ FROM stdin;$")
_ROLE_GRANTEE = re.compile(r"\b(?:TO|FROM)\s+\"?(platform_[a-z0-9_]+)\"?", re.IGNORECASE)
_OWNED = re.compile(r"^ALTER [A-Z ]+? (?=[a-z\"])|\s+OWNER TO .+;$")
_PLATFORM_ROLE = re.compile(r'^"?(platform_[a-z0-9_]+)"?$')
ALLOWED_META = ("restrict", "unrestrict", "connect", "c")
"""The psql meta-commands pg_dump itself writes into a plain dump (``\\restrict KEY`` /
``\\unrestrict KEY`` since 17.6, ``\\connect`` with ``-C``); any other is refused."""


def dump_kind(path: Path) -> str:
    """``custom`` (``pg_dump -Fc``), ``tar`` (``-Ft``), ``directory`` (``-Fd``), ``plain``
    (``pg_dump > file.sql``, gzip-compressed or not) -- or :class:`ValidationError`."""
    if path.is_dir():
        if (path / "toc.dat").is_file():
            return "directory"
        raise ValidationError(f"{path} is neither a platformdb backup nor a pg_dump directory")
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


def _check_plain(path: Path) -> None:
    """Read a plain dump through once before anything runs: refuse one that pg_dump
    started (its header) but that does not end with pg_dump's last line (a file cut short
    would restore part of a database), and one that holds a psql meta-command pg_dump
    does not write (``\\!`` runs a shell command, ``\\i`` reads another file...): a dump
    is data, it gets no shell."""
    head = b""
    tail: list[bytes] = []
    scanner = MetaScanner()
    try:
        for number, raw in enumerate(_plain_lines(path), 1):
            if len(head) < 512:
                head += raw
            if raw.strip():
                tail = [*tail[-4:], raw.strip()]
            command = scanner.line(raw.decode("utf-8", "surrogateescape"))
            if command is not None and command not in ALLOWED_META:
                raise ValidationError(
                    f"{path.name} line {number} holds the psql command \\{command}, which "
                    "pg_dump never writes; refusing to run it (nothing was restored)")
    except (EOFError, OSError, zlib.error) as exc:  # a gzip stream that ends early
        raise ValidationError(f"{path} is truncated or damaged ({exc}); nothing was "
                              "restored: use a complete copy of the dump") from exc
    if PLAIN_HEADER + b"\n" in head and PLAIN_END not in tail:
        raise ValidationError(f"{path} ends before pg_dump's closing line ({PLAIN_END.decode()}"
                              "): the file is truncated; nothing was restored, use a complete "
                              "copy of the dump")


_TOKEN = re.compile(r"\$[A-Za-z_][A-Za-z_0-9]*\$|\$\$|--|/\*|\*/|'|\"|\\")


class MetaScanner:
    """Finds psql meta-commands in SQL text as psql's lexer does: a backslash outside a
    string, a quoted identifier, a dollar-quoted body or a comment starts one (anywhere
    in a line); ``COPY ... FROM stdin`` data runs to its ``\\.`` line."""

    def __init__(self) -> None:
        self.state = ""  # "", "'", '"', "/*" or a dollar tag
        self.depth = 0  # nested /* */ comments
        self.in_copy = False

    def line(self, text: str) -> str | None:
        """The first meta-command of ``text`` (its name, ``!`` for ``\\!``), or None."""
        stripped = text.rstrip("\r\n")
        if self.in_copy:
            self.in_copy = stripped != "\\."
            return None
        for token in _TOKEN.finditer(stripped):
            word = token.group()
            if self.state == "":
                if word == "\\":
                    rest = stripped[token.end():]
                    match = re.match(r"[A-Za-z]+|[^A-Za-z\s]", rest)
                    return match.group() if match else ""
                if word == "--":
                    break
                if word == "/*":
                    self.state, self.depth = "/*", 1
                elif word in ("'", '"') or word.startswith("$"):
                    self.state = word
            elif self.state == "/*":
                self.depth += 1 if word == "/*" else -1 if word == "*/" else 0
                if self.depth == 0:
                    self.state = ""
            elif word == self.state:
                self.state = ""  # '' inside a string closes and reopens: same outcome
        if self.state == "" and _COPY.match(stripped):
            self.in_copy = True
        return None


def _looks_plain(head: bytes) -> bool:
    text = head.lstrip(b"\xef\xbb\xbf").lstrip()
    return text.startswith(PLAIN_HEADER) or text.startswith(b"--") or text[:6].upper() in (
        b"SET ST", b"CREATE", b"BEGIN;")


def stage_dump(path: Path, url: str, *, force: bool = False, jobs: int | None = None) -> Staged:
    """Restore a ``pg_dump`` file (or directory) into a new scratch database.

    The checks a dump without a manifest allows: it is a dump (plain SQL, custom, tar or
    directory format); a plain dump holds no psql meta-command but pg_dump's own and is
    complete (read through before anything runs); it restores completely
    (``psql --single-transaction`` with ``ON_ERROR_STOP``, ``pg_restore --exit-on-error``,
    ``-j jobs`` for custom and directory dumps); the platform's roles it owns objects by
    or grants to are created ``NOLOGIN`` when missing; objects owned by those roles get
    them back (the rest belongs to the restoring role, the migration owner); and the
    result holds the migration ledger (``platformdb.schema_migrations``), i.e. it is a
    platform database. The target keeps its database-level grants (``CONNECT`` /
    ``TEMPORARY``, which a dump does not carry). Row counts are reported as found (no
    manifest to compare with).
    """
    found = dump_kind(path)
    if found == "plain":
        _check_plain(path)
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
        if found == "plain":
            _create_platform_roles(scratch, _granted_roles(_schema_lines(path, found, scratch)))
            _psql_restore(path, scratch)
        else:
            _restore_archive(path, scratch, jobs=jobs, parallel=found != "tar")
        labels = _ledger_of(scratch)
        if not labels:
            raise ValidationError(
                f"{path.name} restored, but it holds no migration ledger ({LEDGER}): not a "
                "platform database; nothing was changed")
        if acl is None:  # a new target: the grants the dump's migrations give a database
            acl = _migrations_database_acl(scratch, labels)
        if acl is not None:
            apply_database_acl(scratch, acl)
        tables = table_states_parallel(scratch, jobs or default_jobs())
    except BaseException:
        _drop_database(scratch)
        raise
    return Staged(url, scratch, RestoreReport(scratch, tables, []))


def _target_acl(url: str) -> list[list[str]] | None:
    if not _exists(url):
        return None
    with connect(url) as conn:
        return database_acl(conn)


def _migrations_database_acl(url: str, labels: list[str]) -> list[list[str]] | None:
    """The database-level grants (``CONNECT`` / ``TEMPORARY``) that the migrations of
    ``labels`` give a database, read from a scratch database they build (dropped
    afterwards): a pg_dump file does not carry them. None when a migration is unknown."""
    from platformdb.migrate import discover, migrations_dir

    known = {m.label: m for m in discover(migrations_dir("postgresql"))}
    if any(label not in known for label in labels):
        return None
    prefix = f"{_database(url)[:30]}_restore_grants"  # named as a restore's scratch is
    with scratch_database(_admin_url(url), [known[label] for label in labels],
                          prefix=prefix) as built, connect(built) as conn:
        return database_acl(conn)


def _ledger_of(url: str) -> list[str]:
    with connect(url) as conn:
        return ledger_state(conn)[1]


def _plain_lines(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as raw:
        compressed = raw.read(2) == b"\x1f\x8b"
    with (gzip.open(path, "rb") if compressed else open(path, "rb")) as handle:
        yield from handle


def _schema_lines(path: Path, found: str, url: str) -> list[str]:
    """The dump's ``GRANT`` / ``REVOKE`` / ``ALTER DEFAULT PRIVILEGES`` / ``OWNER TO``
    statements (one line each, as pg_dump writes them)."""
    starts = ("GRANT ", "REVOKE ", "ALTER ")
    if found == "plain":
        scanner = MetaScanner()
        lines = []
        for raw in _plain_lines(path):
            text = raw.decode("utf-8", "replace")
            was_data = scanner.in_copy or scanner.state != ""
            scanner.line(text)
            if not was_data and text.startswith(starts):
                lines.append(text.rstrip("\r\n"))
        return lines
    listing = run_tool([pg_tool("pg_restore", url), "--schema-only", "-f", "-", str(path)],
                       "pg_restore --schema-only")
    return [line for line in listing.splitlines() if line.startswith(starts)]


def _granted_roles(lines: list[str]) -> set[str]:
    """The platform roles (``platform_*``) the statements grant to, revoke from or make
    owners."""
    found = {match for line in lines if line.startswith(("GRANT ", "REVOKE ", "ALTER DEFAULT"))
             for match in _ROLE_GRANTEE.findall(line)}
    for line in lines:
        owner = _OWNER.match(line)
        role = _PLATFORM_ROLE.match(owner.group(1)) if owner else None
        if role is not None:
            found.add(role.group(1))
    return found


def _owner_statements(lines: list[str]) -> list[str]:
    """The ``ALTER ... OWNER TO platform_*`` statements: owners that are platform roles."""
    return [line for line in lines if (owner := _OWNER.match(line)) is not None
            and _PLATFORM_ROLE.match(owner.group(1))]


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
    """A plain dump (checked by :func:`_check_plain`) through psql in one transaction.

    ``OWNER TO`` lines are kept for the platform's roles and left out for others (the
    restoring role owns those); pg_dump's ``\\restrict`` / ``\\unrestrict`` / ``\\connect``
    lines are left out, and psql runs restricted under a key of ours (psql 17.6+): it
    would refuse any meta-command the check above missed.
    """
    key = uuid.uuid4().hex
    restricted = _psql_restricts(url)
    process = spawn(
        [pg_tool("psql", url), "-X", "-q", "--single-transaction", "-v", "ON_ERROR_STOP=1",
         "-d", url, "-f", "-"],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert process.stdin is not None and process.stderr is not None
    stderr, chunks = process.stderr, []
    drain = threading.Thread(target=lambda: chunks.append(stderr.read()), daemon=True)
    drain.start()  # psql's messages must never fill a pipe while we feed it
    scanner = MetaScanner()
    try:
        if restricted:
            process.stdin.write(f"\\restrict {key}\n".encode())
        for raw in _plain_lines(path):
            line = raw.rstrip(b"\r\n").decode("utf-8", "surrogateescape")
            was_data = scanner.in_copy or scanner.state != ""
            command = scanner.line(line)
            if not was_data:
                if command is not None and line.startswith("\\"):
                    continue  # pg_dump's own (checked): \restrict, \unrestrict, \connect
                owner = _OWNER.match(line)
                if owner is not None and not _PLATFORM_ROLE.match(owner.group(1)):
                    continue
            process.stdin.write(raw)
        process.stdin.close()
    except BrokenPipeError:
        pass  # psql stopped at an error: its message follows
    except BaseException:  # interrupted: psql must not run on behind our back
        stop_tool(process)
        raise
    code = process.wait()
    _forget(process)
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


def _psql_restricts(url: str) -> bool:
    """Whether this psql knows ``\\restrict`` (17.6+, 16.10+, 15.14+...)."""
    version = run_tool([pg_tool("psql", url), "--version"], "psql --version")
    match = re.search(r"(\d+)\.(\d+)", version)
    if match is None:
        return False
    major, minor = int(match.group(1)), int(match.group(2))
    return major >= 18 or (major, minor) >= {17: (17, 6), 16: (16, 10), 15: (15, 14),
                                              14: (14, 19), 13: (13, 22)}.get(major, (99, 0))


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


def _with_database(url: str, name: str) -> str:
    return urlsplit(url)._replace(path=f"/{name}").geturl()


def check_restored(manifest: Manifest, url: str, verify: bool,
                   jobs: int | None = None) -> RestoreReport:
    restored = table_states_parallel(url, jobs or default_jobs())
    mismatches = [
        f"{table}: expected {state.rows} rows (checksum {state.checksum}), found "
        f"{restored[table].rows if table in restored else 'no table'}"
        for table, state in manifest.tables.items()
        if restored.get(table) != state
    ]
    if verify and mismatches:
        raise CheckFailed(f"restored data differs from the manifest: {mismatches[0]}")
    return RestoreReport(url, restored, mismatches)
