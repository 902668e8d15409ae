"""ClickHouse syntax through ClickHouse's own parser, in chDB, for every topology.

Each statement of ``clickhouse/**/*.sql`` goes through ``SELECT
formatQuery('...')``, which parses without executing, so nothing needs to
exist. Templates (:mod:`platformdb.stores.clickhouse.ddl`) are rendered first: for a
single node, for a cluster (``ON CLUSTER``, Replicated and Distributed
engines) and for managed ClickHouse (no ``ON CLUSTER``), and each rendering is
parsed. Migrations written before templates are parsed as they are, and their
cluster editions (``migrations/cluster/``) for a cluster. Across the
migrations folder, every Distributed table must come after its local table.

The parser runs in a child process (:func:`platformdb.stores.clickhouse.ddl.parse_errors`):
a lint run never collides with a chDB path the calling process has open.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from platformdb.errors import MigrationError
from platformdb.lint.context import CLICKHOUSE_DIR, Context
from platformdb.lint.findings import Finding
from platformdb.stores.clickhouse.ddl import (
    CLUSTER_EDITIONS,
    Statement,
    Topology,
    check_order,
    cluster_edition,
    is_template,
    parse_errors,
    render,
    split,
)

RULE = "ch-syntax"
RULE_CLUSTER = "ch-syntax-cluster"
RULE_MANAGED = "ch-syntax-managed"
RULE_TEMPLATE = "ch-template"
MIGRATIONS = "migrations"

_POSITION_RE = re.compile(r"\(line (?P<line>\d+), col (?P<col>\d+)\)")
_SYNTAX_RE = re.compile(r"Syntax error[^:]*: failed at position \d+ \((?P<near>[^)]*)\)")
_TOPOLOGIES = {RULE: Topology.single(), RULE_CLUSTER: Topology.on_cluster(),
               RULE_MANAGED: Topology.managed()}

__all__ = ["RULE", "RULE_CLUSTER", "RULE_MANAGED", "RULE_TEMPLATE", "check", "describe", "split"]


@dataclass(frozen=True)
class _Job:
    rel: str
    statement: Statement
    rule: str


def check(ctx: Context) -> list[Finding]:
    findings: list[Finding] = []
    jobs: list[_Job] = []
    for path in ctx.files(CLICKHOUSE_DIR, "**/*.sql"):
        rel = ctx.rel(path)
        text = path.read_text(encoding="utf-8")
        for rule in _rules(path, text):
            try:
                statements = render(text, _TOPOLOGIES[rule])
            except MigrationError as exc:
                findings.append(Finding(rel, _line(exc), RULE_TEMPLATE, f"{exc} ({_where(rule)})"))
                continue
            jobs.extend(_Job(rel, statement, rule) for statement in statements)
    findings.extend(_order(ctx))
    errors = parse_errors([job.statement.text for job in jobs])
    broken = {(job.rel, job.statement.line) for job, error in zip(jobs, errors, strict=True)
              if error is not None and job.rule == RULE}
    for job, error in zip(jobs, errors, strict=True):
        # a statement that does not parse single-node is reported once, not again per rendering
        if error is not None and (job.rule == RULE or (job.rel, job.statement.line) not in broken):
            findings.append(_finding(job, error))
    return findings


def _rules(path: Path, text: str) -> list[str]:
    """Which renderings of ``path`` to parse."""
    if path.parent.name == CLUSTER_EDITIONS and path.parent.parent.name == MIGRATIONS:
        return [RULE_CLUSTER]  # a cluster edition: single node is the migration itself
    if is_template(text):
        return [RULE, RULE_CLUSTER, RULE_MANAGED]
    if path.parent.name == MIGRATIONS:
        # written before templates: as applied, and with no ON CLUSTER for managed services
        return [RULE, RULE_MANAGED]
    return [RULE]


def _order(ctx: Context) -> list[Finding]:
    """On a cluster, every Distributed table comes after its local table, migration by
    migration."""
    folder = ctx.root / CLICKHOUSE_DIR / MIGRATIONS
    if not folder.is_dir():
        return []
    findings: list[Finding] = []
    known: set[str] = set()
    ups = sorted(p for p in folder.glob("*.sql") if not p.name.endswith(".down.sql"))
    for path in ups:
        source = cluster_edition(path) or path
        try:
            statements = render(source.read_text(encoding="utf-8"), _TOPOLOGIES[RULE_CLUSTER])
            check_order(statements, known)
        except MigrationError as exc:
            findings.append(Finding(ctx.rel(source), _line(exc), RULE_TEMPLATE, str(exc)))
            continue
        known |= _created(statements)
    return findings


_CREATE = re.compile(r"^\s*CREATE\s+(?:OR\s+REPLACE\s+)?TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?"
                     r"`?(?P<name>\w+)`?", re.I)


def _created(statements: list[Statement]) -> set[str]:
    return {m["name"] for s in statements if (m := _CREATE.match(s.text))}


def _line(exc: MigrationError) -> int:
    match = re.match(r"line (\d+):", str(exc))
    return int(match[1]) if match else 1


def _where(rule: str) -> str:
    return {RULE: "single node", RULE_CLUSTER: "cluster", RULE_MANAGED: "managed"}[rule]


def _finding(job: _Job, error: str) -> Finding:
    position = _POSITION_RE.search(error)
    line = job.statement.line + int(position["line"]) - 1 if position and job.rule == RULE else (
        job.statement.line)
    suffix = "" if job.rule == RULE else f" (in the {_where(job.rule)} rendering)"
    return Finding(job.rel, line, job.rule, describe(error) + suffix)


def describe(error: str) -> str:
    """ClickHouse's parser message, shortened to what a reader needs."""
    syntax = _SYNTAX_RE.search(error)
    if syntax is not None:
        return f"syntax error near {syntax['near']!r} (ClickHouse parser)"
    first = error.strip().splitlines()[0] if error.strip() else "parse failed"
    return re.sub(r"^.*?DB::Exception: ", "", first)[:300]
