"""Finer points of the injection checks than the fixtures show."""

from __future__ import annotations

from pathlib import Path

import pytest

from platformdb.lint import blocking, run_lint
from platformdb.lint.injection_python import check_file


def python_findings(tmp_path: Path, body: str) -> list[int]:
    path = tmp_path / "m.py"
    path.write_text(body)
    return [f.line for f in check_file("m.py", path)]


@pytest.mark.parametrize("code", [
    'conn.execute(f"SELECT * FROM {LEDGER}")',
    'conn.execute(f"SELECT * FROM {mod.TABLE}")',
    'conn.execute("SELECT %s" % (LIMIT,))',
    'conn.execute(f"SELECT {int(n)}")',
    'conn.execute(f"SELECT {quote_identifier(n)}")',
    'conn.execute(sql.SQL("SELECT {}").format(sql.Identifier(n)))',
    'conn.execute("SELECT %s, %s", (n, n))',
    'conn.execute(n)',
])
def test_python_safe_sql(tmp_path: Path, code: str) -> None:
    body = f"LEDGER = 'x'\nLIMIT = 5\n\ndef f(conn, n):\n    {code}\n"
    assert python_findings(tmp_path, body) == []


@pytest.mark.parametrize("code", [
    'conn.execute(f"SELECT * FROM {n}")',
    'conn.execute("SELECT * FROM %s" % n)',
    'conn.execute("SELECT * FROM " + n)',
    'conn.execute("SELECT * FROM {}".format(n))',
    'conn.execute(sql.SQL(f"SELECT {n}"))',
    'conn.query(f"SELECT {n}")',
    'client.command(query=f"DROP TABLE {n}")',
    'conn.execute(f"SELECT {self.table}")',
])
def test_python_sql_built_from_values(tmp_path: Path, code: str) -> None:
    assert python_findings(tmp_path, f"def f(conn, client, n, self):\n    {code}\n") == [2]


def test_python_follows_local_variables(tmp_path: Path) -> None:
    body = ("TABLES = ('a', 'b')\n\n"
            "def f(conn, n, local):\n"
            "    for table in TABLES:\n"
            "        conn.execute(f'TRUNCATE {table}')\n"
            "    scope = 'true' if local else 'false'\n"
            "    conn.execute(f'SELECT {scope}')\n"
            "    query = f'SELECT {n}'\n"
            "    conn.execute(query)\n")
    assert python_findings(tmp_path, body) == [9]


def plpgsql_lines(tmp_path: Path, body: str, declare: str = "") -> list[int]:
    folder = tmp_path / "postgresql" / "functions"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "f.sql").write_text(
        "CREATE FUNCTION f(t text, n int, d date, r regclass) RETURNS void\n"
        f"LANGUAGE plpgsql AS $$\nDECLARE\n    q text;\n{declare}BEGIN\n{body}END\n$$;\n")
    return [f.line for f in blocking(run_lint(tmp_path, rules=["injection"]))]


@pytest.mark.parametrize("statement", [
    "EXECUTE format('SELECT %I, %L', t, t);",
    "EXECUTE 'SELECT ' || n || ', ' || d || ', ' || r;",
    "EXECUTE 'SELECT $1' USING t;",
    "EXECUTE 'SELECT ' || quote_literal(t);",
    "EXECUTE format('SELECT %s', n);",
    "EXECUTE format('SELECT %2$s, %1$I', t, d);",
    "q := format('SELECT %L', t); EXECUTE q;",
    "EXECUTE t;",
])
def test_plpgsql_safe_dynamic_sql(tmp_path: Path, statement: str) -> None:
    assert plpgsql_lines(tmp_path, f"    {statement}\n") == []


@pytest.mark.parametrize("statement", [
    "EXECUTE 'SELECT ' || t;",
    "EXECUTE format('SELECT %s', t);",
    "EXECUTE format('SELECT %1$I, %1$s', t);",
    "EXECUTE concat('SELECT ', t);",
    "EXECUTE 'SELECT ' || lower(t);",
    "FOR rec IN EXECUTE 'SELECT ' || t LOOP END LOOP;",
    "q := 'SELECT ' || t; EXECUTE q;",
])
def test_plpgsql_unsafe_dynamic_sql(tmp_path: Path, statement: str) -> None:
    declare = "    rec record;\n"
    assert plpgsql_lines(tmp_path, f"    {statement}\n", declare) == [7]
