"""migration-safety on partitioned tables: CREATE INDEX there points to the online-index
directive; CONCURRENTLY there is an error; an online-index file is not told to use
CONCURRENTLY (the engine does)."""

from __future__ import annotations

from pathlib import Path

from platformdb.lint import run_lint

FILES = {
    "001_init.sql": (
        "-- 001: a partitioned table and a plain one\n"
        "CREATE TABLE public.p (id bigint NOT NULL, d date NOT NULL, x bigint)"
        " PARTITION BY RANGE (d);\n"
        "CREATE TABLE public.t (id bigint PRIMARY KEY, x bigint);\n"
        "CREATE INDEX idx_p_d ON public.p (d);\n"),  # same file: the table is new, fine
    "002_index.sql": (
        "-- 002: an index on the live partitioned table, the blocking way\n"
        "CREATE INDEX idx_p_x ON public.p (x);\n"),
    "003_concurrently.sql": (
        "-- platformdb: no-transaction\n"
        "-- 003: CONCURRENTLY, which PostgreSQL refuses on a partitioned table\n"
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_p_x2 ON p (x);\n"),
    "004_online.sql": (
        "-- platformdb: online-index\n"
        "-- 004: the safe path\n"
        "CREATE INDEX IF NOT EXISTS idx_p_x3 ON public.p (x);\n"),
    "005_online_unnamed.sql": (
        "-- platformdb: online-index\n"
        "-- 005: an index without a name cannot be resumed\n"
        "CREATE INDEX ON public.p (id);\n"
        "UPDATE public.t SET x = 1;\n"),
    "006_plain.sql": (
        "-- 006: a plain table keeps Squawk's advice\n"
        "CREATE INDEX idx_t_x ON public.t (x);\n"),
}


def test_indexes_on_partitioned_tables_point_to_the_online_index_directive(
        tmp_path: Path) -> None:
    folder = tmp_path / "postgresql" / "migrations"
    folder.mkdir(parents=True)
    for name, text in FILES.items():
        (folder / name).write_text(text)
        (folder / name.replace(".sql", ".down.sql")).write_text("SELECT 1;\n")
    found = {(f.path.rsplit("/", 1)[-1], f.line, f.rule): f
             for f in run_lint(tmp_path, ["migration-safety"])}
    assert set(found) == {
        ("002_index.sql", 2, "require-online-index"),
        ("003_concurrently.sql", 3, "concurrent-index-on-partitioned-table"),
        ("005_online_unnamed.sql", 3, "online-index-statement"),
        ("005_online_unnamed.sql", 4, "online-index-statement"),
        ("006_plain.sql", 2, "require-concurrent-index-creation"),
    }
    message = found[("002_index.sql", 2, "require-online-index")].message
    assert "partitioned table p" in message and "-- platformdb: online-index" in message
    assert found[("003_concurrently.sql", 3, "concurrent-index-on-partitioned-table")
                 ].severity == "error"
