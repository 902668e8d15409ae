"""Waiving one finding in the file, with a reason.

In SQL and Lua: ``-- lint: allow <rule> <reason>``. (Python is ruff's: its
``S608`` finds SQL built from strings, waived with ``# noqa: S608 <reason>``.)
A waiver covers findings of ``<rule>``:

- on its own line (a trailing comment), or
- on the line below it (it may be one of several comment lines directly
  above), or
- anywhere in the SQL statement below it: the statement that the finding's
  line belongs to.

A waiver without a reason waives nothing and is itself a finding
(``waiver-without-reason``). When every check ran, a waiver that matched no
finding is reported too (``waiver-unused``), so waivers do not outlive the
code they excused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from platformdb.lint.context import Context
from platformdb.lint.findings import Finding

RULE_NO_REASON = "waiver-without-reason"
RULE_UNUSED = "waiver-unused"
_WAIVER_RE = re.compile(
    r"^--+\s*lint:\s*allow\b\s*(?P<rule>[A-Za-z0-9_/-]+)?[ \t]*(?P<reason>[^\n]*?)\s*$")
_SQL_MARKER_RE = re.compile(r"--+\s*lint:")
_COMMENT_LINE_RE = re.compile(r"^\s*--")
SUFFIXES = (".sql", ".lua")


@dataclass(frozen=True)
class Waiver:
    path: str
    line: int
    rule: str
    reason: str


def read_waivers(text: str, rel: str) -> list[Waiver]:
    """Every ``lint: allow`` comment of a file."""
    waivers: list[Waiver] = []
    for number, comment in _comments(text):
        match = _WAIVER_RE.match(comment)
        if match:
            waivers.append(Waiver(rel, number, match["rule"] or "", match["reason"] or ""))
    return waivers


def _comments(text: str) -> list[tuple[int, str]]:
    """(line, comment text) pairs of the ``--`` comments (SQL and Lua)."""
    found: list[tuple[int, str]] = []
    for number, line in enumerate(text.split("\n"), start=1):
        marker = _SQL_MARKER_RE.search(line)
        if marker:
            found.append((number, line[marker.start():]))
    return found


def apply(ctx: Context, findings: list[Finding], report_unused: bool) -> list[Finding]:
    """``findings`` without the waived ones, plus findings about the waivers."""
    by_path: dict[str, list[Finding]] = {}
    for finding in findings:
        by_path.setdefault(finding.path, []).append(finding)
    kept: list[Finding] = []
    problems: list[Finding] = []
    for rel in sorted(set(by_path) | set(_files_with_waivers(ctx))):
        path = ctx.root / rel
        items = by_path.get(rel, [])
        if not path.is_file() or path.suffix not in SUFFIXES:
            kept.extend(items)
            continue
        text = path.read_text(encoding="utf-8")
        waivers = read_waivers(text, rel)
        valid = [w for w in waivers if w.rule and w.reason]
        problems.extend(
            Finding(rel, w.line, RULE_NO_REASON,
                    f"'lint: allow {w.rule or '<rule>'}' needs a reason after the rule name; "
                    "it waives nothing until it says why") for w in waivers if w not in valid)
        used: set[Waiver] = set()
        lines = text.split("\n")
        for finding in items:
            if finding.severity == "info":
                kept.append(finding)
                continue
            covering = [w for w in valid if w.rule == finding.rule
                        and w.line in _anchors(ctx, path, lines, finding.line)]
            used.update(covering)
            if not covering:
                kept.append(finding)
        if report_unused:
            problems.extend(
                Finding(rel, w.line, RULE_UNUSED,
                        f"nothing here is reported as {w.rule}; remove the waiver", "warning")
                for w in valid if w not in used)
    return kept + problems


def _files_with_waivers(ctx: Context) -> list[str]:
    """Files of the linted folders that hold a waiver (for unused/unreasoned ones)."""
    found: list[str] = []
    for folder, pattern in (("postgresql", "**/*.sql"), ("clickhouse", "**/*.sql"),
                            ("redis/scripts", "**/*.lua")):
        for path in ctx.files(folder, pattern):
            if "lint: allow" in path.read_text(encoding="utf-8", errors="replace"):
                found.append(ctx.rel(path))
    return found


def _anchors(ctx: Context, path: Path, lines: list[str], line: int) -> set[int]:
    """The lines on which a waiver covers a finding at ``line``."""
    anchors = {line} | _comments_above(lines, line)
    if path.suffix == ".sql" and ctx.rel(path).startswith("postgresql/"):
        statement = ctx.sql(path).statement_at(line)
        if statement is not None:
            anchors |= {statement.line} | _comments_above(lines, statement.line)
    return anchors


def _comments_above(lines: list[str], line: int) -> set[int]:
    """The run of comment-only lines directly above ``line`` (1-based)."""
    found: set[int] = set()
    number = line - 1
    while number >= 1 and _COMMENT_LINE_RE.match(lines[number - 1]):
        found.add(number)
        number -= 1
    return found

