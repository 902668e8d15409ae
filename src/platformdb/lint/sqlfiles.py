"""Reading PostgreSQL files once per run: psql meta-commands out, statements in.

SQL test files run under ``psql -f`` and may hold psql meta-commands, which
are not SQL. Before parsing, every line that starts with a backslash (``\\set``,
``\\echo``, ``\\if``...) is blanked, a trailing ``\\gset``/``\\g`` ends its
statement like ``;`` would, and psql variables are replaced the way psql
would: ``:name`` by the value a ``\\set`` gave it, ``:'name'`` by a string
literal and ``:"name"`` by an identifier. Line numbers are kept, so every
message points at the real line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import pglast
from pglast import ast
from pglast.parser import ParseError

_SET_RE = re.compile(r"^\\set\s+(?P<name>[A-Za-z_]\w*)(?:\s+(?P<value>.*?))?\s*$")
_VAR_RE = re.compile(
    r":(?:(?P<quote>['\"])(?P<qname>[A-Za-z_]\w*)(?P=quote)|(?P<name>[A-Za-z_]\w*))")
_DOLLAR_RE = re.compile(r"\$(?:[A-Za-z_]\w*)?\$")


def strip_psql(text: str) -> str:
    """``text`` as plain SQL: psql meta-commands blanked, variables substituted.

    Like psql, this only looks outside quotes, quoted identifiers, dollar
    quotes and comments; every line stays where it was.
    """
    variables: dict[str, str] = {}
    scanner = _Scanner(variables)
    out: list[str] = []
    for raw in text.split("\n"):
        if scanner.state == "code" and raw.lstrip().startswith("\\"):
            match = _SET_RE.match(raw.lstrip())
            if match:
                variables[match["name"]] = _unquote(match["value"] or "")
            out.append("")
            continue
        out.append(scanner.line(raw))
    return "\n".join(out)


class _Scanner:
    """Quote state carried from line to line, with psql's substitutions in code."""

    def __init__(self, variables: dict[str, str]) -> None:
        self.variables = variables
        self.state = "code"  # code | quote | ident | dollar | comment
        self.tag = ""
        self.depth = 0

    def line(self, raw: str) -> str:
        out: list[str] = []
        i = 0
        while i < len(raw):
            if self.state != "code":
                i = self._inside(raw, i, out)
                continue
            char = raw[i]
            if raw.startswith("--", i):
                out.append(raw[i:])
                break
            if raw.startswith("/*", i):
                self.state, self.depth = "comment", 1
                out.append("/*")
                i += 2
            elif char in "'\"":
                self.state = "quote" if char == "'" else "ident"
                out.append(char)
                i += 1
            elif char == "$" and (dollar := _DOLLAR_RE.match(raw, i)) and not (
                    i and (raw[i - 1].isalnum() or raw[i - 1] == "_")):
                self.state, self.tag = "dollar", dollar.group(0)
                out.append(self.tag)
                i = dollar.end()
            elif char == "\\":
                # a meta-command after SQL: \gset, \g, \gx... end the statement
                out.append(";" if raw.startswith("\\g", i) else "")
                break
            elif char == ":" and not raw.startswith("::", i) and not (i and raw[i - 1] == ":"):
                i = self._variable(raw, i, out)
            else:
                out.append(char)
                i += 1
        return "".join(out)

    def _inside(self, raw: str, i: int, out: list[str]) -> int:
        if self.state == "dollar":
            end = raw.find(self.tag, i)
            if end < 0:
                out.append(raw[i:])
                return len(raw)
            out.append(raw[i:end + len(self.tag)])
            self.state = "code"
            return end + len(self.tag)
        if self.state == "comment":
            if raw.startswith("*/", i):
                self.depth -= 1
                self.state = "comment" if self.depth else "code"
                out.append("*/")
                return i + 2
            if raw.startswith("/*", i):
                self.depth += 1
                out.append("/*")
                return i + 2
            out.append(raw[i])
            return i + 1
        quote = "'" if self.state == "quote" else '"'
        if raw[i] == quote:
            if raw.startswith(quote * 2, i):
                out.append(quote * 2)
                return i + 2
            self.state = "code"
        out.append(raw[i])
        return i + 1

    def _variable(self, raw: str, i: int, out: list[str]) -> int:
        match = _VAR_RE.match(raw, i)
        if match is None:
            out.append(raw[i])
            return i + 1
        if match["qname"]:
            value = self.variables.get(match["qname"], match["qname"])
            out.append(_quote(value, match["quote"]))
        elif match["name"] in self.variables:
            out.append(self.variables[match["name"]])
        else:
            out.append(match.group(0))
        return match.end()


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == "'":
        return value[1:-1].replace("''", "'")
    return value


def _quote(value: str, quote: str) -> str:
    return quote + value.replace(quote, quote * 2) + quote


def line_of(text: str, offset: int) -> int:
    """The 1-based line of character ``offset`` in ``text``."""
    return text.count("\n", 0, max(offset, 0)) + 1


@dataclass(frozen=True)
class Statement:
    """One top-level statement of a file."""

    line: int
    end_line: int
    offset: int
    text: str
    node: ast.Node


@dataclass(frozen=True)
class SyntaxProblem:
    line: int
    message: str


@dataclass
class SqlFile:
    """A PostgreSQL file, parsed once; ``error`` is set when it does not parse."""

    path: Path
    rel: str
    text: str
    sql: str
    statements: tuple[Statement, ...] = ()
    error: SyntaxProblem | None = None
    _plpgsql: dict[int, Any] = field(default_factory=dict, repr=False)

    @cached_property
    def lines(self) -> list[str]:
        return self.text.split("\n")

    def statement_at(self, line: int) -> Statement | None:
        """The statement that spans ``line``, if any."""
        for statement in self.statements:
            if statement.line <= line <= statement.end_line:
                return statement
        return None

    def plpgsql(self, statement: Statement) -> list[dict[str, Any]] | SyntaxProblem | None:
        """The PL/pgSQL parse tree of a function or DO block, or its syntax error.

        ``None`` when the statement has no PL/pgSQL body (SQL functions, other
        statements). PL/pgSQL errors carry no position; they point at the
        statement's first line.
        """
        if not is_plpgsql(statement.node):
            return None
        if statement.offset not in self._plpgsql:
            try:
                self._plpgsql[statement.offset] = pglast.parse_plpgsql(statement.text + ";")
            except ParseError as exc:
                self._plpgsql[statement.offset] = SyntaxProblem(statement.line, str(exc.args[0]))
        result: list[dict[str, Any]] | SyntaxProblem = self._plpgsql[statement.offset]
        return result


def load(path: Path, rel: str) -> SqlFile:
    """Read and parse ``path``; a syntax error is recorded, not raised."""
    text = path.read_text(encoding="utf-8")
    sql = strip_psql(text)
    try:
        raws = pglast.parse_sql(sql)
    except ParseError as exc:
        location = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], int) else 0
        return SqlFile(path, rel, text, sql, error=SyntaxProblem(line_of(sql, location),
                                                                 str(exc.args[0])))
    statements = []
    for raw in raws:
        if raw.stmt is None:
            continue
        start = raw.stmt_location or 0
        end = start + raw.stmt_len if raw.stmt_len else len(sql)
        body = sql[start:end].rstrip().rstrip(";")
        statements.append(Statement(line_of(sql, start), line_of(sql, start + len(body)),
                                    start, body, raw.stmt))
    return SqlFile(path, rel, text, sql, tuple(statements))


def is_plpgsql(node: ast.Node) -> bool:
    """A ``CREATE FUNCTION/PROCEDURE ... LANGUAGE plpgsql`` or a ``DO`` block."""
    if isinstance(node, ast.DoStmt):
        language = option(node.args, "language")
        return language is None or language.lower() == "plpgsql"
    if isinstance(node, ast.CreateFunctionStmt):
        language = option(node.options, "language")
        return language is not None and language.lower() == "plpgsql"
    return False


def option(options: tuple[ast.Node, ...] | None, name: str) -> str | None:
    """The string value of DefElem ``name`` in a function's or DO's options."""
    for item in options or ():
        if isinstance(item, ast.DefElem) and item.defname == name:
            value = item.arg
            if isinstance(value, ast.String):
                return str(value.sval)
            if isinstance(value, tuple | list) and value and isinstance(value[0], ast.String):
                return str(value[0].sval)
    return None


def function_name(node: ast.Node) -> str:
    """``schema.name`` of a CREATE FUNCTION, or ``DO block``."""
    if isinstance(node, ast.CreateFunctionStmt):
        return ".".join(str(part.sval) for part in node.funcname or ())
    return "DO block"


def body_line(sql_file: SqlFile, statement: Statement) -> int:
    """The file line on which the PL/pgSQL body's text begins.

    PL/pgSQL line numbers count from the line holding the opening quote, so a
    body line ``n`` is file line ``body_line + n - 1``.
    """
    node = statement.node
    options = node.args if isinstance(node, ast.DoStmt) else getattr(node, "options", None)
    for item in options or ():
        if isinstance(item, ast.DefElem) and item.defname == "as" and item.arg_location:
            return line_of(sql_file.sql, item.arg_location)
    return statement.line
