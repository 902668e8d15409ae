"""PgBouncer in front of PostgreSQL, as the spec's connection-pooling section prescribes.

- :func:`config_text`: a ``pgbouncer.ini`` for the platform -- transaction
  pooling, SCRAM authentication from an ``auth_file``, pool sizes for a few
  services, no ``server_reset_query`` (transaction mode never runs one; the
  tenant context is bound to each transaction, docs/SECURITY.md);
- :func:`provision_logins`: one login per service, as the spec's access-control
  section asks (:data:`SERVICES`: ``svc_api`` holds ``platform_app``...), with
  generated passwords kept 0600 under ``$PLATFORMDB_HOME/secrets/``; the
  server gets each login's SCRAM secret (never the password), and the
  ``auth_file`` (:func:`userlist`) the same secret, so PgBouncer checks clients
  and logs in to the server for them without holding any password;
- :func:`pool_metrics` / :func:`health`: ``SHOW POOLS`` / ``SHOW STATS`` /
  ``SHOW LISTS`` on the admin console, for ``stats``, the exporter and ``health``.

The embedded stack runs one (:class:`platformdb.embedded.EmbeddedPgBouncer`)
when a ``pgbouncer`` binary is installed (Debian/Ubuntu: ``apt-get install
pgbouncer``). The rules services follow behind it are in docs/OPERATIONS.md.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import re
import secrets
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import psycopg
from psycopg import sql

from platformdb.errors import ConfigError, Hint, StoreUnavailable
from platformdb.redaction import redact
from platformdb.types import Metric, StoreHealth

SERVICES: dict[str, str] = {
    "svc_api": "platform_app",
    "svc_auth": "platform_auth",
    "svc_etl": "platform_etl",
    "svc_reporting": "platform_readonly",
    "svc_connector": "platform_connector",
}
"""One login per service (spec: "separate database users for each service") -> its role."""
ADMIN_USER = "pgbouncer_admin"
"""The admin console's user: known to PgBouncer only; no PostgreSQL role, so no database."""
SECRETS = Path("secrets")
SCRAM_ITERATIONS = 4096


@dataclass(frozen=True)
class PoolSettings:
    """The sizes in the generated configuration, and where it listens.

    Defaults fit a handful of services on one PostgreSQL with ``max_connections``
    of 100 or more: at most ``max_db_connections`` server connections per database
    (20 per service login, 5 more in a burst), up to ``max_client_conn`` clients
    waiting their turn.
    """

    listen_addr: str = "127.0.0.1"
    listen_port: int = 6432
    default_pool_size: int = 20
    reserve_pool_size: int = 5
    max_db_connections: int = 80
    max_client_conn: int = 1000
    max_prepared_statements: int = 200
    """Used by PgBouncer 1.21+ only (protocol-level prepared statements across transactions)."""


def version(program: Path) -> tuple[int, int]:
    """(major, minor) of ``program`` (``PgBouncer 1.18.0`` -> (1, 18))."""
    out = subprocess.run([str(program), "--version"], capture_output=True, text=True,
                         check=False, timeout=30).stdout
    match = re.search(r"PgBouncer (\d+)\.(\d+)", out)
    if match is None:
        raise ConfigError(f"{program} --version did not say which PgBouncer it is")
    return int(match[1]), int(match[2])


def supports_prepared_statements(pgbouncer_version: tuple[int, int]) -> bool:
    """PgBouncer 1.21 tracks protocol-level prepared statements in transaction mode."""
    return pgbouncer_version >= (1, 21)


# ------------------------------------------------------------------ configuration


def config_text(postgres_url: str, *, settings: PoolSettings | None = None,
                auth_file: str = "userlist.txt", databases: list[str] | None = None,
                any_database: bool = False, pgbouncer_version: tuple[int, int] = (1, 21),
                logfile: str | None = None, pidfile: str | None = None) -> str:
    """A ``pgbouncer.ini`` that pools ``postgres_url``'s server for the platform's services.

    ``databases``: the databases clients may ask for (default: the URL's);
    ``any_database`` adds PgBouncer's ``*`` entry (any database of that server:
    the embedded stack, whose tests make scratch databases).
    """
    pool = settings or PoolSettings()
    parts = urlsplit(postgres_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 5432
    names = databases or [parts.path.lstrip("/") or "postgres"]
    for name in names:
        if not re.fullmatch(r"[A-Za-z0-9_]+", name):
            raise ConfigError(f"database name {name!r} cannot go in pgbouncer.ini as is")
    lines = [
        "; PgBouncer for the platform, written by `platformdb pgbouncer config`.",
        "; Transaction pooling: each transaction gets any server connection, so services",
        "; keep no session state between transactions (docs/OPERATIONS.md#pgbouncer).",
        "",
        "[databases]",
        *(f"{name} = host={host} port={port} dbname={name}" for name in names),
    ]
    if any_database:
        lines.append(f"* = host={host} port={port}")
    prepared = (f"max_prepared_statements = {pool.max_prepared_statements}"
                if supports_prepared_statements(pgbouncer_version) else
                "; max_prepared_statements needs PgBouncer 1.21+: this one cannot keep prepared\n"
                "; statements across transactions; clients must not prepare\n"
                "; (psycopg: prepare_threshold=None)")
    lines += [
        "",
        "[pgbouncer]",
        f"listen_addr = {pool.listen_addr}",
        f"listen_port = {pool.listen_port}",
        "unix_socket_dir =",
        "",
        "; Clients prove their password with SCRAM against the auth_file, which holds each",
        "; login's SCRAM secret exactly as the server stores it: PgBouncer then logs in to the",
        "; server with the client's proof, and no password is kept anywhere in its files.",
        "auth_type = scram-sha-256",
        f"auth_file = {auth_file}",
        f"admin_users = {ADMIN_USER}",
        f"stats_users = {ADMIN_USER}",
        "",
        "pool_mode = transaction",
        "; No reset between clients: transaction mode never runs it, and the tenant context",
        "; is bound to the transaction that set it (set_tenant, docs/SECURITY.md).",
        "server_reset_query =",
        "server_reset_query_always = 0",
        "; JDBC sends this at startup; PgBouncer must not refuse the connection for it.",
        "ignore_startup_parameters = extra_float_digits",
        prepared,
        "",
        "; Pool sizes: per (database, login) pair, plus a reserve for bursts, capped per",
        "; database below the server's max_connections (keep room for migrations, backups",
        "; and the exporter, which connect directly).",
        f"default_pool_size = {pool.default_pool_size}",
        "min_pool_size = 0",
        f"reserve_pool_size = {pool.reserve_pool_size}",
        "reserve_pool_timeout = 3",
        f"max_db_connections = {pool.max_db_connections}",
        f"max_client_conn = {pool.max_client_conn}",
        "",
        "; Time limits: a client waiting more than 2 minutes for a server connection gets an",
        "; error instead of hanging; idle server connections close after 10 minutes.",
        "query_wait_timeout = 120",
        "server_idle_timeout = 600",
        "server_lifetime = 3600",
        "server_connect_timeout = 15",
        "server_login_retry = 5",
    ]
    if logfile:
        lines.append(f"logfile = {logfile}")
    if pidfile:
        lines.append(f"pidfile = {pidfile}")
    return "\n".join(lines) + "\n"


def scram_secret(password: str, *, salt: bytes | None = None,
                 iterations: int = SCRAM_ITERATIONS) -> str:
    """PostgreSQL's SCRAM-SHA-256 secret of ``password`` (what ``pg_authid`` stores)."""
    salt = salt or secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def secret_file(home: Path, login: str) -> Path:
    return home / SECRETS / f"pgbouncer-{login}-password"


def read_password(home: Path, login: str) -> str | None:
    try:
        return secret_file(home, login).read_text().strip() or None
    except FileNotFoundError:
        return None


def _password(home: Path, login: str) -> str:
    """``login``'s password: kept from before, or generated now and kept (0600)."""
    found = read_password(home, login)
    if found:
        return found
    path = secret_file(home, login)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    password = secrets.token_urlsafe(24)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        out.write(password + "\n")
    return password


def provision_logins(owner_url: str, home: Path) -> dict[str, str]:
    """Create or refresh one login per service on ``owner_url``'s server; login -> SCRAM secret.

    Each login inherits its platform role and holds nothing else: no superuser, no
    ``BYPASSRLS``, no ``CREATEROLE``.
    A platform role the migrations have not created yet is created ``NOLOGIN``
    (as the migrations themselves do, idempotently). Passwords are generated once
    and kept in ``home/secrets/pgbouncer-<login>-password`` (0600); the server is
    given their SCRAM secrets, never the passwords. Needs a role that may create
    roles (the migration owner of the embedded stack).
    """
    secrets_by_login: dict[str, str] = {}
    try:
        with psycopg.connect(owner_url, autocommit=True, connect_timeout=10) as conn:
            for login, role in SERVICES.items():
                password = _password(home, login)
                stored = _stored_secret(conn, login)
                secret = (stored if stored and _matches(stored, password)
                          else scram_secret(password))
                _ensure_role(conn, role)
                exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s",
                                      (login,)).fetchone() is not None
                verb = "ALTER" if exists else "CREATE"
                conn.execute(sql.SQL(f"{verb} ROLE {{}} WITH LOGIN NOSUPERUSER NOCREATEDB "
                                     "NOCREATEROLE NOBYPASSRLS INHERIT PASSWORD {}").format(
                    sql.Identifier(login), sql.Literal(secret)))
                conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(role),
                                                              sql.Identifier(login)))
                secrets_by_login[login] = secret
    except psycopg.Error as exc:
        raise StoreUnavailable(
            f"cannot create the PgBouncer service logins at {redact(owner_url)}: "
            f"{str(exc).strip().splitlines()[0]}", store="postgresql") from exc
    secrets_by_login[ADMIN_USER] = scram_secret(_password(home, ADMIN_USER))
    return secrets_by_login


def _stored_secret(conn: psycopg.Connection[Any], login: str) -> str | None:
    """The server's SCRAM secret of ``login`` (None: no such login, or not ours to read)."""
    try:
        row = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s",
                           (login,)).fetchone()
    except psycopg.errors.InsufficientPrivilege:
        return None  # a CREATEROLE owner that is no superuser: a new secret each time
    return str(row[0]) if row and row[0] else None


def _ensure_role(conn: psycopg.Connection[Any], role: str) -> None:
    if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
        return
    # created meanwhile by another session: roles are cluster-wide
    with contextlib.suppress(psycopg.errors.DuplicateObject, psycopg.errors.UniqueViolation):
        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))


def _matches(secret: str, password: str) -> bool:
    """Whether ``secret`` is the SCRAM secret of ``password`` (keeps the salt stable)."""
    match = re.fullmatch(r"SCRAM-SHA-256\$(\d+):([^$]+)\$([^:]+):(.+)", secret)
    if match is None:
        return False
    salt = base64.b64decode(match[2])
    return hmac.compare_digest(scram_secret(password, salt=salt, iterations=int(match[1])),
                               secret)


def userlist(secrets_by_login: dict[str, str]) -> str:
    """The ``auth_file``: ``"login" "SCRAM-SHA-256$..."`` per line."""
    return "".join(f'"{login}" "{secret}"\n' for login, secret in sorted(secrets_by_login.items()))


def service_url(home: Path, login: str, host: str, port: int, database: str) -> str:
    """A service login's URL through PgBouncer (its password read from ``home``)."""
    password = read_password(home, login)
    if password is None:
        raise ConfigError(f"no password kept for {login} under {home / SECRETS}",
                          hint=Hint(command="platformdb up",
                                    does="(it creates the service logins)"))
    return f"postgresql://{login}:{quote(password, safe='')}@{host}:{port}/{database}"


def admin_url(home: Path, host: str, port: int) -> str:
    """The admin console's URL (database ``pgbouncer``)."""
    return service_url(home, ADMIN_USER, host, port, "pgbouncer")


# ------------------------------------------------------------------ admin console


def console(url: str, command: str) -> list[dict[str, Any]]:
    """The rows of one admin console command (``SHOW POOLS``...), as dicts."""
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
            # the console speaks the simple query protocol only
            cursor = psycopg.ClientCursor(conn)
            cursor.execute(command)
            names = [column.name for column in cursor.description or []]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    except psycopg.Error as exc:
        raise StoreUnavailable(f"PgBouncer at {redact(url)} did not answer {command}: "
                               f"{str(exc).strip().splitlines()[0]}",
                               store="postgresql") from exc


def pool_metrics(url: str) -> list[Metric]:
    """Clients and server connections per pool, and totals, from the admin console."""
    metrics: list[Metric] = []
    totals = {"cl_active": 0, "cl_waiting": 0, "sv_active": 0, "sv_idle": 0, "sv_used": 0}
    longest_wait = 0.0
    for row in console(url, "SHOW POOLS"):
        if row.get("database") == "pgbouncer":
            continue
        labels = {"database": str(row["database"]), "user": str(row["user"])}
        for column, name, text in (
                ("cl_active", "pool_clients_active", "clients linked to a server connection"),
                ("cl_waiting", "pool_clients_waiting", "clients waiting for a server connection"),
                ("sv_active", "pool_servers_active", "server connections in use by a client"),
                ("sv_idle", "pool_servers_idle", "server connections idle and ready")):
            value = int(row.get(column) or 0)
            totals[column] += value
            metrics.append(Metric("pgbouncer", name, float(value), text, labels))
        totals["sv_used"] += int(row.get("sv_used") or 0)
        wait = float(row.get("maxwait") or 0) + float(row.get("maxwait_us") or 0) / 1e6
        longest_wait = max(longest_wait, wait)
        metrics.append(Metric("pgbouncer", "pool_max_wait_seconds", wait,
                              "how long the oldest waiting client has waited", labels,
                              "seconds"))
    metrics.append(Metric("pgbouncer", "clients_waiting", float(totals["cl_waiting"]),
                          "clients waiting for a server connection, all pools"))
    metrics.append(Metric("pgbouncer", "server_connections",
                          float(totals["sv_active"] + totals["sv_idle"] + totals["sv_used"]),
                          "server connections open, all pools"))
    metrics.append(Metric("pgbouncer", "max_wait_seconds", longest_wait,
                          "the longest any client has waited, all pools", {}, "seconds"))
    # PgBouncer lists a database in SHOW STATS only once a client has used it; its
    # counters start at zero for every configured database so rate() has a start.
    stats = {str(row["database"]): row for row in console(url, "SHOW STATS")}
    for row in console(url, "SHOW DATABASES"):
        stats.setdefault(str(row["name"]), {})
    stats.pop("pgbouncer", None)
    for database, row in sorted(stats.items()):
        labels = {"database": database}
        metrics.append(Metric("pgbouncer", "transactions", float(row.get("total_xact_count") or 0),
                              "transactions pooled", labels, kind="counter"))
        metrics.append(Metric("pgbouncer", "queries", float(row.get("total_query_count") or 0),
                              "queries pooled", labels, kind="counter"))
        metrics.append(Metric("pgbouncer", "wait_time_seconds",
                              float(row.get("total_wait_time") or 0) / 1e6,
                              "time clients spent waiting for a server connection", labels,
                              "seconds", kind="counter"))
    return metrics


def health(url: str) -> StoreHealth:
    """PgBouncer's row of ``platformdb health``: answering, pooling, who waits."""
    target = redact(url)
    started = time.perf_counter()
    try:
        pools = [row for row in console(url, "SHOW POOLS") if row.get("database") != "pgbouncer"]
    except StoreUnavailable as exc:
        return StoreHealth("pgbouncer", False, None, target, str(exc))
    latency = round((time.perf_counter() - started) * 1000, 2)
    waiting = sum(int(row.get("cl_waiting") or 0) for row in pools)
    servers = sum(int(row.get("sv_active") or 0) + int(row.get("sv_idle") or 0)
                  + int(row.get("sv_used") or 0) for row in pools)
    modes = sorted({str(row.get("pool_mode")) for row in pools if row.get("pool_mode")})
    detail = (f"ok ({'/'.join(modes) or 'transaction'} pooling, {len(pools)} pools, "
              f"{servers} server connections, {waiting} clients waiting)")
    return StoreHealth("pgbouncer", True, latency, target, detail)
