"""docs/SCHEMA.md is generated from the schema, and the suite notices when it is stale."""

from __future__ import annotations

import difflib
from pathlib import Path

import psycopg
import pytest

from platformdb.docs_gen import (
    clickhouse_tables_from_ddl,
    generate_schema_md,
    parse_formatted,
    redis_structures,
    write_schema_md,
)
from platformdb.errors import CheckFailed

REPO = Path(__file__).resolve().parents[1]
SCHEMA_MD = REPO / "docs" / "SCHEMA.md"


def generate(url: str) -> str:
    return generate_schema_md(url, clickhouse_tables_from_ddl(REPO / "clickhouse"),
                              REPO / "redis" / "schemas")


@pytest.mark.slow
def test_committed_schema_md_matches_the_migrated_schema(migrated_url: str) -> None:
    expected = generate(migrated_url)
    committed = SCHEMA_MD.read_text() if SCHEMA_MD.is_file() else ""
    diff = "\n".join(difflib.unified_diff(committed.splitlines(), expected.splitlines(),
                                          "docs/SCHEMA.md (committed)", "generated",
                                          lineterm="", n=1))
    assert committed == expected, (
        "docs/SCHEMA.md is stale; run `platformdb docs` and commit it:\n" + diff[:4000])


def test_a_schema_change_changes_the_generated_docs(migrated_url: str) -> None:
    before = generate_schema_md(migrated_url)
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE campaigns ADD COLUMN docs_probe integer")
    after = generate_schema_md(migrated_url)
    assert before != after
    assert "| `docs_probe` | `integer` | null |" in after


def test_generation_is_deterministic(migrated_url: str) -> None:
    assert generate_schema_md(migrated_url) == generate_schema_md(migrated_url)


@pytest.mark.slow
def test_docs_cover_every_table_with_an_er_diagram(migrated_url: str) -> None:
    text = generate_schema_md(migrated_url)
    with psycopg.connect(migrated_url) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")]
    assert tables
    for table in tables:
        assert f"\n### {table}\n" in text
        assert f"\n    {table} {{\n" in text
    assert "```mermaid\nerDiagram\n" in text


def test_check_mode_fails_on_a_stale_file(tmp_path: Path) -> None:
    path = tmp_path / "SCHEMA.md"
    assert write_schema_md("new\n", path) is True
    assert write_schema_md("new\n", path) is False
    assert write_schema_md("new\n", path, check=True) is True
    with pytest.raises(CheckFailed, match="out of date"):
        write_schema_md("newer\n", path, check=True)


def test_clickhouse_ddl_is_read_clause_by_clause() -> None:
    formatted = ("CREATE TABLE IF NOT EXISTS db.events\n(\n"
                 "    `ts` DateTime CODEC(Delta, ZSTD),\n"
                 "    `amount` Decimal(15, 2) DEFAULT 0,\n"
                 "    `tags` Map(String, String)\n)\n"
                 "ENGINE = MergeTree\nPARTITION BY toYYYYMM(ts)\nORDER BY (ts)\n"
                 "TTL ts + toIntervalDay(90)")
    table = parse_formatted("clickhouse/tables/events.sql", formatted)
    assert table is not None and table.name == "events" and table.kind == "TABLE"
    assert [(c.name, c.type, c.extra) for c in table.columns] == [
        ("ts", "DateTime", "CODEC(Delta, ZSTD)"),
        ("amount", "Decimal(15, 2)", "DEFAULT 0"),
        ("tags", "Map(String, String)", ""),
    ]
    assert table.clauses == [("ENGINE", "MergeTree"), ("PARTITION BY", "toYYYYMM(ts)"),
                             ("ORDER BY", "(ts)"), ("TTL", "ts + toIntervalDay(90)")]


def test_clickhouse_ddl_is_normalised_by_clickhouse(tmp_path: Path) -> None:
    (tmp_path / "tables").mkdir()
    (tmp_path / "tables" / "t.sql").write_text(
        "-- a table\nCREATE TABLE IF NOT EXISTS t (a UInt8, b String DEFAULT 'x;y')\n"
        "ENGINE = MergeTree ORDER BY a;\n")
    [table] = clickhouse_tables_from_ddl(tmp_path)
    assert [(c.name, c.type) for c in table.columns] == [("a", "UInt8"), ("b", "String")]
    assert ("ORDER BY", "a") in table.clauses


def test_redis_structures_come_from_headings_and_first_paragraphs(tmp_path: Path) -> None:
    (tmp_path / "sessions.md").write_text(
        "# Sessions: `session:{user_id}` (Hash)\n\nOne hash per session,\nwith an index.\n\n"
        "## Fields\n\n- user_id\n")
    [item] = redis_structures(tmp_path)
    assert item.title == "Sessions: `session:{user_id}` (Hash)"
    assert item.summary == "One hash per session, with an index."


@pytest.mark.slow
def test_committed_reference_ddl_matches_the_migrations(stack_home: Path, tmp_path: Path) -> None:
    """postgresql/schemas/*.sql, regenerated on the embedded server (the pg_dump of record)."""
    from platformdb import embedded
    from platformdb.docs_gen import scratch_database, table_ddl, write_table_ddl

    admin = embedded.EmbeddedPostgres(stack_home).url("postgres")
    with scratch_database(admin, REPO / "postgresql" / "migrations") as url:
        files = table_ddl(url)
    assert len(files) == 12
    assert "FORCE ROW LEVEL SECURITY" in files["campaigns.sql"]
    write_table_ddl(files, REPO / "postgresql" / "schemas", check=True)
    stale = tmp_path / "schemas"
    write_table_ddl({**files, "users.sql": "-- old\n"}, stale)
    with pytest.raises(CheckFailed, match=r"users\.sql"):
        write_table_ddl(files, stale, check=True)
