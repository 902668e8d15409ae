"""Finer points of the injection checks than the fixtures show."""

from __future__ import annotations

from pathlib import Path

import pytest

from platformdb.lint import blocking, run_lint


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
