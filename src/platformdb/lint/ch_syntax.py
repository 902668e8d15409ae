"""ClickHouse syntax through ClickHouse's own parser, in chDB.

Each statement of ``clickhouse/**/*.sql`` goes through ``SELECT
formatQuery('...')``, which parses without executing, so nothing needs to
exist. A second pass parses the cluster rendering (``ON CLUSTER``,
Replicated and Distributed engines) when :mod:`platformdb.clickhouse` offers
a renderer.

chDB lets one process open one database path at a time, so the parser runs
in a child process: a lint run never collides with a chDB session that the
calling process (a test, the CLI) has open.
"""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from platformdb.errors import ConfigError
from platformdb.lint.context import CLICKHOUSE_DIR, Context
from platformdb.lint.findings import Finding

RULE = "ch-syntax"
RULE_CLUSTER = "ch-syntax-cluster"
RULE_SKIPPED = "ch-cluster-skipped"
WORKER_TIMEOUT = 300

_POSITION_RE = re.compile(r"\(line (?P<line>\d+), col (?P<col>\d+)\)")
_SYNTAX_RE = re.compile(r"Syntax error[^:]*: failed at position \d+ \((?P<near>[^)]*)\)")


@dataclass(frozen=True)
class ChStatement:
    """One statement of a ClickHouse file and its first line."""

    line: int
    text: str


def split(text: str) -> list[ChStatement]:
    """Split ClickHouse SQL on ``;`` outside quotes and comments.

    Each statement starts at its first token (leading comments dropped) so a
    parser position ``line N`` is file line ``statement.line + N - 1``.
    """
    statements: list[ChStatement] = []
    start: int | None = None
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if text.startswith("--", i) or ch == "#":
            i = _skip_to(text, "\n", i)
            continue
        if text.startswith("/*", i):
            i = _skip_to(text, "*/", i + 2) + 1
            continue
        if ch == ";":
            if start is not None:
                statements.append(_statement(text, start, i))
                start = None
            i += 1
            continue
        if not ch.isspace() and start is None:
            start = i
        if ch in "'\"`":
            i = _skip_quoted(text, i)
            continue
        i += 1
    if start is not None and text[start:].strip():
        statements.append(_statement(text, start, n))
    return statements


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


def _statement(text: str, start: int, end: int) -> ChStatement:
    return ChStatement(text.count("\n", 0, start) + 1, text[start:end].rstrip())


def cluster_renderer() -> Callable[[str], str] | None:
    """The ClickHouse driver's cluster rendering of one statement, if it exists.

    Looked up as ``platformdb.clickhouse.render_cluster(sql) -> str`` (or
    ``render_for_cluster``); ``None`` when the module or function is absent.
    """
    try:
        module = importlib.import_module("platformdb.clickhouse")
    except ImportError:
        return None
    for name in ("render_cluster", "render_for_cluster"):
        function = getattr(module, name, None)
        if callable(function):
            return function  # type: ignore[no-any-return]
    return None


def check(ctx: Context) -> list[Finding]:
    files = ctx.files(CLICKHOUSE_DIR, "**/*.sql")
    jobs: list[tuple[str, ChStatement, str, str]] = []  # rel, statement, sql to parse, rule
    render = cluster_renderer()
    findings: list[Finding] = []
    for path in files:
        rel = ctx.rel(path)
        for statement in split(path.read_text(encoding="utf-8")):
            jobs.append((rel, statement, statement.text, RULE))
            if render is None:
                continue
            try:
                rendered = render(statement.text)
            except Exception as exc:  # a renderer failure is a finding, not a crash
                findings.append(Finding(rel, statement.line, RULE_CLUSTER,
                                        f"cannot render for a cluster: {exc}"))
                continue
            if rendered.strip() != statement.text.strip():
                # a MergeTree table renders as two statements: local and Distributed
                jobs.extend((rel, statement, part.text, RULE_CLUSTER) for part in split(rendered))
    if files and render is None:
        findings.append(Finding(
            ctx.rel(ctx.root / CLICKHOUSE_DIR), 0, RULE_SKIPPED,
            "platformdb.clickhouse has no cluster renderer (render_cluster); "
            "only the single-node DDL was parsed", "info"))
    if not jobs:
        return findings
    errors = parse_in_child([sql for _, _, sql, _ in jobs])
    broken = {(rel, statement.line) for (rel, statement, _, rule), error
              in zip(jobs, errors, strict=True) if error is not None and rule == RULE}
    for (rel, statement, _, rule), error in zip(jobs, errors, strict=True):
        # a statement that does not parse single-node is reported once, not again per rendering
        if error is not None and (rule == RULE or (rel, statement.line) not in broken):
            findings.append(_finding(rel, statement, rule, error))
    return findings


def _finding(rel: str, statement: ChStatement, rule: str, error: str) -> Finding:
    position = _POSITION_RE.search(error)
    line = statement.line + int(position["line"]) - 1 if position and rule == RULE else (
        statement.line)
    return Finding(rel, line, rule, describe(error) + (
        " (in the cluster rendering)" if rule == RULE_CLUSTER else ""))


def describe(error: str) -> str:
    """ClickHouse's parser message, shortened to what a reader needs."""
    syntax = _SYNTAX_RE.search(error)
    if syntax is not None:
        return f"syntax error near {syntax['near']!r} (ClickHouse parser)"
    first = error.strip().splitlines()[0] if error.strip() else "parse failed"
    return re.sub(r"^.*?DB::Exception: ", "", first)[:300]


def parse_in_child(statements: list[str]) -> list[str | None]:
    """Parse each statement with chDB in a child process; an error message or None."""
    result = subprocess.run(
        [sys.executable, "-m", "platformdb.lint.ch_syntax"],
        input=json.dumps(statements), capture_output=True, text=True,
        timeout=WORKER_TIMEOUT, check=False,
    )
    if result.returncode != 0:
        tail = result.stderr.strip().splitlines()[-1:] or ["no output"]
        raise ConfigError(f"the ClickHouse parser (chDB) failed to run: {tail[0]}; "
                          "is chdb installed in this environment?")
    errors: list[str | None] = json.loads(result.stdout)
    return errors


def _parse_all(statements: list[str]) -> list[str | None]:
    import chdb

    query: Callable[..., Any] = chdb.query
    errors: list[str | None] = []
    for statement in statements:
        try:
            query("SELECT formatQuery({statement:String})", "TSVRaw",
                       params={"statement": _escaped(statement)})
        except Exception as exc:  # chDB raises plain RuntimeError
            errors.append(str(exc))
        else:
            errors.append(None)
    return errors


def _escaped(value: str) -> str:
    """A query parameter's value in ClickHouse's escaped (TSV) form."""
    return (value.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")
            .replace("\r", "\\r"))


def _main() -> int:
    statements: list[Any] = json.loads(sys.stdin.read())
    sys.stdout.write(json.dumps(_parse_all([str(s) for s in statements])))
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
