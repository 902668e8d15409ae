"""ClickHouse DDL: statement splitting, templates for three topologies, parser checks.

The one place that knows how a ClickHouse ``.sql`` file becomes statements:
the migration driver, ``platformdb lint`` and the docs generator import it.

Templates
---------
A migration is written once, with explicit placeholders where single node and
cluster differ, and rendered for a :class:`Topology`:

``{{ on_cluster }}``
    nothing, or `` ON CLUSTER '<cluster>'`` on a cluster.
``{{ local(t) }}``
    the table that stores ``t``'s rows: ``t``, or ``t_local`` on a cluster
    (where ``t`` is the Distributed table over it). Materialized views read
    and write ``local(...)`` tables, ``ALTER``\\ s of settings and storage
    target them.
``{{ engine(SummingMergeTree()) }}``
    the engine as written, or its Replicated form on a cluster
    (``ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/{database}/{table}',
    '{replica}')``, the engine's own arguments after those two).
``{{ distributed(t) }}`` / ``{{ distributed(t, sharding_key) }}``
    a statement of its own: on a cluster, ``CREATE TABLE IF NOT EXISTS t ON
    CLUSTER ... AS t_local ENGINE = Distributed(...)``, sharded by
    ``cityHash64(org_id)`` unless given (one tenant's rows stay on one shard);
    nothing elsewhere. It must come after the local table (checked).
``{{ drop_table(t) }}``
    a statement of its own: ``DROP TABLE IF EXISTS t SYNC``; on a cluster the
    Distributed ``t`` and then ``t_local``, both ``ON CLUSTER ... SYNC``.
``{{ cluster_only }}``
    at the start of a statement: the statement runs on clusters only (e.g.
    the ``ALTER`` that keeps a Distributed table's columns equal to its local
    table's).

Placeholders inside quotes and comments are left alone, so ClickHouse's own
macros (``'{shard}'``, ``'{replica}'``, ``'{cluster}'``) and query parameters
(``{org:UUID}``) never clash with them.

Topologies: ``single`` (one server or chDB), ``cluster`` (``ON CLUSTER``,
Replicated, Distributed), ``managed`` (ClickHouse Cloud and other managed
services, which reject ``ON CLUSTER`` and replicate by themselves: engines as
written, and any statement that still carries ``ON CLUSTER`` is refused).

Migrations written before templates (``001``-``003``) stay as applied (their
checksum is of the file text). Their cluster edition is a template of the
same name in ``migrations/cluster/``; its single-node rendering must equal the
applied file statement for statement (a test checks it), so no table name is
ever rewritten by pattern.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING, Any, Literal

from platformdb.errors import ConfigError, MigrationError

if TYPE_CHECKING:
    from clickhouse_connect.driver import Client

Mode = Literal["single", "cluster", "managed"]
MODES: tuple[Mode, ...] = ("single", "cluster", "managed")
REPLICA_PATH = "'/clickhouse/tables/{shard}/{database}/{table}', '{replica}'"
SHARDING_KEY = "cityHash64(org_id)"
CLUSTER_MACRO = "{cluster}"
CLUSTER_EDITIONS = "cluster"
PARSER_TIMEOUT = 300
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Statement:
    """One statement of a file and the file line it starts on."""

    line: int
    text: str


@dataclass(frozen=True)
class Topology:
    """How DDL is rendered: one node, a cluster, or a managed service."""

    mode: Mode = "single"
    cluster: str = CLUSTER_MACRO
    """The cluster's name; ``{cluster}`` is the server's macro (the default)."""
    database: str = "platform"
    """The database Distributed tables point into."""

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"unknown ClickHouse topology {self.mode!r}; "
                              f"choose one of {', '.join(MODES)}")
        if self.cluster != CLUSTER_MACRO and not _NAME.match(self.cluster):
            raise ConfigError(f"invalid ClickHouse cluster name {self.cluster!r}")
        if not _NAME.match(self.database):
            raise ConfigError(f"invalid ClickHouse database name {self.database!r}")

    @classmethod
    def single(cls, database: str = "platform") -> Topology:
        return cls("single", database=database)

    @classmethod
    def on_cluster(cls, cluster: str = CLUSTER_MACRO, database: str = "platform") -> Topology:
        return cls("cluster", cluster, database)

    @classmethod
    def managed(cls, database: str = "platform") -> Topology:
        return cls("managed", database=database)

    @property
    def clustered(self) -> bool:
        return self.mode == "cluster"


# ------------------------------------------------------------------ splitting


def split(text: str) -> list[Statement]:
    """Split ClickHouse SQL on ``;`` outside quotes and comments.

    Each statement starts at its first token (leading comments dropped) so a
    parser position ``line N`` is file line ``statement.line + N - 1``.
    Empty statements (``;;``) are dropped.
    """
    statements: list[Statement] = []
    start: int | None = None
    for kind, begin, end in _tokens(text):
        if kind == "semicolon":
            if start is not None:
                statements.append(_statement(text, start, begin))
                start = None
        elif kind != "comment" and start is None and not text[begin:end].isspace():
            start = begin + len(text[begin:end]) - len(text[begin:end].lstrip())
    if start is not None and text[start:].strip():
        statements.append(_statement(text, start, len(text)))
    return statements


def _statement(text: str, start: int, end: int) -> Statement:
    return Statement(text.count("\n", 0, start) + 1, text[start:end].rstrip())


def _tokens(text: str) -> Iterable[tuple[str, int, int]]:
    """(kind, start, end) spans: ``comment``, ``quoted``, ``semicolon``, ``code``."""
    i, n, code = 0, len(text), 0
    while i < n:
        ch = text[i]
        kind: str | None = None
        if text.startswith("--", i) or ch == "#":
            kind, end = "comment", _skip_to(text, "\n", i)
        elif text.startswith("/*", i):
            kind, end = "comment", _skip_to(text, "*/", i + 2) + 1
        elif ch in "'\"`":
            kind, end = "quoted", _skip_quoted(text, i)
        elif ch == ";":
            kind, end = "semicolon", i + 1
        if kind is None:
            i += 1
            continue
        if code < i:
            yield "code", code, i
        yield kind, i, min(end, n)
        i = code = min(end, n)
    if code < n:
        yield "code", code, n


def _skip_to(text: str, token: str, i: int) -> int:
    found = text.find(token, i)
    return len(text) if found < 0 else found + 1


def _skip_quoted(text: str, i: int) -> int:
    quote, i = text[i], i + 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == quote:
            if text.startswith(quote * 2, i):
                i += 2
                continue
            return i + 1
        i += 1
    return i


def code_only(sql: str) -> str:
    """``sql`` with comments removed and quoted text blanked (for structural checks)."""
    out: list[str] = []
    for kind, begin, end in _tokens(sql):
        if kind == "comment":
            out.append(" ")
        elif kind == "quoted":
            out.append(sql[begin] + " " * max(end - begin - 2, 0) + sql[begin])
        else:
            out.append(sql[begin:end])
    return "".join(out)


# ------------------------------------------------------------------ templates


_PLACEHOLDER = re.compile(r"\{\{\s*(?P<name>[a-z_]+)\s*(?:\((?P<args>.*?)\)\s*)?\}\}", re.S)
_ON_CLUSTER = re.compile(r"\bON\s+CLUSTER\b", re.I)


def is_template(text: str) -> bool:
    """Whether ``text`` holds ``{{ ... }}`` placeholders outside quotes and comments."""
    return any(kind == "code" and "{{" in text[b:e] for kind, b, e in _tokens(text))


_VALUE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)\}")


def fill_values(text: str, values: Mapping[str, str] | None) -> str:
    """``${name}`` apply-time values (a connection's details, a collection's name).

    They are filled when a migration is applied and never reach the ledger (the
    checksum is of the file). Without ``values`` each becomes its own name, which
    parses like the real value would (for validation and lint).
    """
    if values is None:
        return _VALUE.sub(lambda m: m["name"], text)
    return Template(text).safe_substitute(values)


def render(text: str, topology: Topology,
           values: Mapping[str, str] | None = None) -> list[Statement]:
    """The statements of ``text`` for ``topology``, placeholders filled in.

    ``values`` fill ``${name}`` placeholders (:func:`fill_values`).

    Raises :class:`MigrationError` for an unknown placeholder or (``managed``)
    a statement with ``ON CLUSTER``. The order of local and Distributed tables
    is :func:`check_order`'s job, which knows the tables that already exist.
    """
    out: list[Statement] = []
    for statement in split(fill_values(text, values)):
        body = _fill(statement, topology)
        cluster_only = body.lstrip().startswith(_CLUSTER_ONLY_MARK)
        if cluster_only:
            body = body.lstrip()[len(_CLUSTER_ONLY_MARK):]
            if not topology.clustered:
                continue
        for part in split(body):
            out.append(Statement(statement.line + part.line - 1, part.text))
    if topology.mode == "managed":
        refuse_on_cluster(out)
    return out


_CLUSTER_ONLY_MARK = "\x00cluster_only\x00"


def _fill(statement: Statement, topology: Topology) -> str:
    text = statement.text
    pieces: list[str] = []
    for kind, begin, end in _tokens(text):
        chunk = text[begin:end]
        if kind == "code":
            chunk = _PLACEHOLDER.sub(lambda m: _helper(m, topology, statement), chunk)
            if "{{" in chunk or "}}" in chunk:
                raise MigrationError(f"line {statement.line}: malformed placeholder in "
                                     f"{chunk.strip()[:80]!r}")
        pieces.append(chunk)
    return "".join(pieces)


def _helper(match: re.Match[str], topology: Topology, statement: Statement) -> str:
    name, args = match["name"], _arguments(match["args"])
    helpers: dict[str, Callable[[list[str], Topology], str]] = {
        "on_cluster": _on_cluster, "local": _local, "engine": _engine,
        "distributed": _distributed, "drop_table": _drop_table,
        "cluster_only": lambda _a, _t: _CLUSTER_ONLY_MARK,
    }
    helper = helpers.get(name)
    if helper is None:
        raise MigrationError(f"line {statement.line}: unknown placeholder {{{{ {name} }}}}; "
                             f"known: {', '.join(sorted(helpers))}")
    try:
        return helper(args, topology)
    except (ValueError, ConfigError) as exc:
        raise MigrationError(f"line {statement.line}: {{{{ {name} }}}}: {exc}") from exc


def _arguments(raw: str | None) -> list[str]:
    if raw is None:
        return []
    args, depth, current = [], 0, ""
    for ch in raw:
        if ch == "," and depth == 0:
            args.append(current.strip())
            current = ""
            continue
        depth += (ch == "(") - (ch == ")")
        current += ch
    if current.strip():
        args.append(current.strip())
    return args


def _table_arg(args: list[str], count: Sequence[int] = (1,)) -> str:
    if len(args) not in count:
        raise ValueError(f"expected {' or '.join(map(str, count))} argument(s), got {len(args)}")
    if not _NAME.match(args[0]):
        raise ValueError(f"{args[0]!r} is not a table name")
    return args[0]


def cluster_clause(topology: Topology) -> str:
    if not topology.clustered:
        return ""
    return f" ON CLUSTER '{topology.cluster}'"


def local_name(table: str, topology: Topology) -> str:
    return f"{table}_local" if topology.clustered else table


def _on_cluster(args: list[str], topology: Topology) -> str:
    if args:
        raise ValueError("takes no arguments")
    return cluster_clause(topology)


def _local(args: list[str], topology: Topology) -> str:
    return local_name(_table_arg(args), topology)


_ENGINE_CALL = re.compile(r"^(?P<kind>\w*)MergeTree\s*(?:\((?P<args>.*)\))?$", re.S)


def _engine(args: list[str], topology: Topology) -> str:
    written = ", ".join(args)
    match = _ENGINE_CALL.match(written)
    if match is None or match["kind"].startswith("Replicated"):
        raise ValueError(f"expected a non-replicated MergeTree engine, got {written!r}")
    if not topology.clustered:
        return written
    own = (match["args"] or "").strip()
    return f"Replicated{match['kind']}MergeTree({REPLICA_PATH}{', ' + own if own else ''})"


def _distributed(args: list[str], topology: Topology) -> str:
    table = _table_arg(args, (1, 2))
    if not topology.clustered:
        return ""
    key = args[1] if len(args) == 2 else SHARDING_KEY
    return (f";\nCREATE TABLE IF NOT EXISTS {table}{cluster_clause(topology)}"
            f" AS {table}_local\nENGINE = Distributed('{topology.cluster}', "
            f"{topology.database}, {table}_local, {key});\n")


def _drop_table(args: list[str], topology: Topology) -> str:
    table = _table_arg(args)
    if not topology.clustered:
        return f"DROP TABLE IF EXISTS {table} SYNC"
    on = cluster_clause(topology)
    return (f"DROP TABLE IF EXISTS {table}{on} SYNC;\n"
            f"DROP TABLE IF EXISTS {table}_local{on} SYNC")


# ------------------------------------------------------------------ checks


def refuse_on_cluster(statements: Sequence[Statement]) -> None:
    """Managed ClickHouse rejects ``ON CLUSTER``: refuse any statement carrying it."""
    for statement in statements:
        if _ON_CLUSTER.search(code_only(statement.text)):
            raise MigrationError(
                f"line {statement.line}: ON CLUSTER in a statement for managed ClickHouse, "
                "which rejects it; write {{ on_cluster }} instead")


_CREATE_TABLE = re.compile(
    r"^\s*CREATE\s+(?:OR\s+REPLACE\s+)?TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?`?(?P<name>\w+)`?", re.I)
_DISTRIBUTED = re.compile(
    r"ENGINE\s*=\s*Distributed\s*\(\s*[^,]+,\s*[^,]+,\s*['`]?(?P<local>\w+)['`]?", re.I)


def check_order(statements: Sequence[Statement], existing: Iterable[str] = ()) -> None:
    """Every Distributed table comes after the local table it reads (in ``statements``
    or among ``existing`` tables)."""
    known = set(existing)
    for statement in statements:
        code = code_only(statement.text)
        create = _CREATE_TABLE.match(code)
        if create is None:
            continue
        distributed = _DISTRIBUTED.search(statement.text)
        if distributed is not None and distributed["local"] not in known:
            raise MigrationError(
                f"line {statement.line}: Distributed table {create['name']} comes before its "
                f"local table {distributed['local']}; create the local table first")
        known.add(create["name"])


def cluster_edition(path: Path) -> Path | None:
    """The template of a migration written before templates (``migrations/cluster/``)."""
    edition = path.parent / CLUSTER_EDITIONS / path.name
    return edition if edition.is_file() else None


def source_for(path: Path, text: str, topology: Topology) -> str:
    """What to render for the migration file at ``path`` (text ``text``).

    Single node and managed run the file as written (templates rendered); a
    cluster runs its cluster edition when it has one.
    """
    if topology.clustered:
        edition = cluster_edition(path)
        if edition is not None:
            return edition.read_text(encoding="utf-8")
    return text


def same_statements(first: Sequence[Statement], second: Sequence[Statement]) -> bool:
    return [s.text for s in first] == [s.text for s in second]


# ------------------------------------------------------------------ parser


def format_query(client: Client, sql: str) -> str:
    """ClickHouse's own parser on ``sql`` (nothing runs); its canonical text."""
    result = client.query("SELECT formatQuery({q:String})", parameters={"q": sql})
    return str(result.result_rows[0][0])


def parse_errors(statements: Sequence[str]) -> list[str | None]:
    """Parse each statement with ClickHouse's parser (chDB, in a child process).

    A chDB engine is one per process, so the parser runs beside whatever the
    calling process has open. Returns an error message or ``None`` per
    statement.
    """
    return _in_child("parse", statements)


def formatted(statements: Sequence[str]) -> list[str | None]:
    """``formatQuery`` of each statement (chDB in a child process); ``None`` if it does
    not parse."""
    return _in_child("format", statements)


def _in_child(action: str, statements: Sequence[str]) -> list[str | None]:
    if not statements:
        return []
    result = subprocess.run(
        [sys.executable, "-m", "platformdb.stores.clickhouse.ddl", action],
        input=json.dumps(list(statements)), capture_output=True, text=True,
        timeout=PARSER_TIMEOUT, check=False)
    if result.returncode != 0:
        tail = result.stderr.strip().splitlines()[-1:] or ["no output"]
        raise ConfigError(f"the ClickHouse parser (chDB) failed to run: {tail[0]}; "
                          "is chdb installed in this environment?")
    answers: list[str | None] = json.loads(result.stdout)
    return answers


def _child(action: str, statements: list[str]) -> list[str | None]:
    import clickhouse_connect
    from clickhouse_connect.driver import exceptions as cc_errors

    client: Any = clickhouse_connect.get_client(interface="chdb")  # in memory
    out: list[str | None] = []
    try:
        for statement in statements:
            try:
                text = format_query(client, statement)
            except cc_errors.Error as exc:
                out.append(str(exc) if action == "parse" else None)
            else:
                out.append(None if action == "parse" else text)
    finally:
        client.close()
    return out


def _main() -> int:
    action = sys.argv[1] if len(sys.argv) > 1 else "parse"
    statements = [str(s) for s in json.loads(sys.stdin.read())]
    sys.stdout.write(json.dumps(_child(action, statements)))
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
