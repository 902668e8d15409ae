"""``migrate plan``: the locks, rewrites and scans it claims are what PostgreSQL does.

Each statement runs inside a transaction on a real server (then rolls back): the
strongest lock the session holds on each relation (``pg_locks``), whether the
table's file changed (``relfilenode``: a rewrite) and whether it read every row
(``pg_stat_xact_all_tables.seq_scan``: a scan) are compared with the plan's claims.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pglast
import psycopg
import pytest

from platformdb.migrate import Migrator, discover, migrations_dir
from platformdb.migrate.options import MigrateOptions
from platformdb.stores.postgres.analysis import (
    ACCESS_EXCLUSIVE,
    LOCKS,
    analyse,
    binary_compatible,
    type_text,
)
from platformdb.stores.postgres.driver import PostgresDriver
from platformdb.stores.postgres.plan import PostgresPlanner
from tests.test_cli import cli

SETUP = """
CREATE TABLE r (id int PRIMARY KEY);
INSERT INTO r SELECT generate_series(1, 1000);
CREATE TABLE t (id int PRIMARY KEY, a int, b varchar(50), v numeric(15,2) NOT NULL DEFAULT 0,
                ts timestamp, CONSTRAINT chk_t_v CHECK (v >= 0));
INSERT INTO t SELECT i, i, 'x', 1, now() FROM generate_series(1, 1000) i;
ALTER TABLE t ADD CONSTRAINT chk_t_id CHECK (id > 0) NOT VALID;
CREATE UNIQUE INDEX t_a_key ON t (a);
CREATE INDEX i_t_b ON t (b);
CREATE FUNCTION noop() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
CREATE TRIGGER trg_t BEFORE UPDATE ON t FOR EACH ROW EXECUTE FUNCTION noop();
CREATE POLICY pol_t ON t USING (true);
CREATE VIEW v AS SELECT id FROM t;
CREATE TABLE p (id int NOT NULL, d date NOT NULL, x int) PARTITION BY RANGE (d);
CREATE TABLE p_2020 PARTITION OF p FOR VALUES FROM ('2020-01-01') TO ('2021-01-01')
    PARTITION BY HASH (id);
CREATE TABLE p_2020_h0 PARTITION OF p_2020 FOR VALUES WITH (MODULUS 2, REMAINDER 0);
CREATE TABLE p_2020_h1 PARTITION OF p_2020 FOR VALUES WITH (MODULUS 2, REMAINDER 1);
CREATE TABLE p_default PARTITION OF p DEFAULT;
INSERT INTO p SELECT i, '2020-06-01', i FROM generate_series(1, 500) i;
CREATE TABLE p_loose (id int NOT NULL, d date NOT NULL, x int);
ANALYZE;
"""

# statement -> (relation: expected strongest lock) for the relations the plan names
CASES: list[tuple[str, dict[str, tuple[str, ...]]]] = [
    ("ALTER TABLE t ADD COLUMN c int", {"t": (ACCESS_EXCLUSIVE,)}),
    ("ALTER TABLE t ADD COLUMN c int NOT NULL DEFAULT 0", {"t": (ACCESS_EXCLUSIVE,)}),
    ("ALTER TABLE t ADD COLUMN c uuid DEFAULT gen_random_uuid()", {"t": (ACCESS_EXCLUSIVE,)}),
    ("ALTER TABLE t ALTER COLUMN v TYPE numeric(38,2)", {"t": (ACCESS_EXCLUSIVE,)}),
    ("ALTER TABLE t ALTER COLUMN b TYPE text", {"t": (ACCESS_EXCLUSIVE,)}),
    ("ALTER TABLE t ALTER COLUMN a TYPE bigint", {"t": (ACCESS_EXCLUSIVE,)}),
    ("ALTER TABLE t ALTER COLUMN a SET NOT NULL", {"t": (ACCESS_EXCLUSIVE,)}),
    ("ALTER TABLE t ALTER COLUMN a SET DEFAULT 1", {"t": (ACCESS_EXCLUSIVE,)}),
    ("ALTER TABLE t ADD CONSTRAINT chk_a CHECK (a > 0)", {"t": (ACCESS_EXCLUSIVE,)}),
    ("ALTER TABLE t ADD CONSTRAINT chk_a CHECK (a > 0) NOT VALID", {"t": (ACCESS_EXCLUSIVE,)}),
    ("ALTER TABLE t ADD CONSTRAINT fk_a FOREIGN KEY (a) REFERENCES r (id) NOT VALID",
     {"t": ("SHARE ROW EXCLUSIVE",), "r": ("SHARE ROW EXCLUSIVE",)}),
    ("ALTER TABLE t ADD CONSTRAINT fk_a FOREIGN KEY (id) REFERENCES r (id)",
     {"t": ("SHARE ROW EXCLUSIVE",), "r": ("SHARE ROW EXCLUSIVE",)}),
    ("ALTER TABLE t VALIDATE CONSTRAINT chk_t_id", {"t": ("SHARE UPDATE EXCLUSIVE",)}),
    ("ALTER TABLE t DROP CONSTRAINT chk_t_v", {"t": (ACCESS_EXCLUSIVE,)}),
    ("ALTER TABLE t ADD CONSTRAINT t_a_uq UNIQUE USING INDEX t_a_key", {"t": (ACCESS_EXCLUSIVE,)}),
    ("ALTER TABLE t SET (fillfactor = 70, autovacuum_enabled = false)",
     {"t": ("SHARE UPDATE EXCLUSIVE",)}),
    ("ALTER TABLE t ALTER COLUMN a SET STATISTICS 500", {"t": ("SHARE UPDATE EXCLUSIVE",)}),
    ("ALTER TABLE t CLUSTER ON i_t_b", {"t": ("SHARE UPDATE EXCLUSIVE",)}),
    ("ALTER TABLE t DISABLE TRIGGER trg_t", {"t": ("SHARE ROW EXCLUSIVE",)}),
    ("ALTER TABLE t ENABLE ROW LEVEL SECURITY", {"t": (ACCESS_EXCLUSIVE,)}),
    ("ALTER TABLE t FORCE ROW LEVEL SECURITY", {"t": (ACCESS_EXCLUSIVE,)}),
    ("ALTER TABLE t DROP COLUMN b", {"t": (ACCESS_EXCLUSIVE,)}),
    ("ALTER TABLE t RENAME COLUMN b TO b2", {"t": (ACCESS_EXCLUSIVE,)}),
    ("ALTER TABLE t REPLICA IDENTITY FULL", {"t": (ACCESS_EXCLUSIVE,)}),
    ("ALTER TABLE t SET UNLOGGED", {"t": (ACCESS_EXCLUSIVE,)}),
    ("ALTER INDEX i_t_b RENAME TO i_t_b2", {"i_t_b": ("SHARE UPDATE EXCLUSIVE",)}),
    ("CREATE INDEX i_t_a ON t (a)", {"t": ("SHARE",)}),
    ("CREATE INDEX i_p_x ON ONLY p (x)", {"p": ("SHARE",)}),
    ("CREATE INDEX i_p_x ON p (x)", {"p": ("SHARE",)}),
    ("CREATE POLICY pol_t2 ON t USING (a > 0)", {"t": (ACCESS_EXCLUSIVE,)}),
    ("ALTER POLICY pol_t ON t USING (a > 1)", {"t": (ACCESS_EXCLUSIVE,)}),
    ("DROP POLICY pol_t ON t", {"t": (ACCESS_EXCLUSIVE,)}),
    ("CREATE TRIGGER trg_t2 AFTER INSERT ON t FOR EACH ROW EXECUTE FUNCTION noop()",
     {"t": ("SHARE ROW EXCLUSIVE",)}),
    ("DROP TRIGGER trg_t ON t", {"t": (ACCESS_EXCLUSIVE,)}),
    ("COMMENT ON TABLE t IS 'x'", {"t": ("SHARE UPDATE EXCLUSIVE",)}),
    ("COMMENT ON COLUMN t.a IS 'x'", {"t": ("SHARE UPDATE EXCLUSIVE",)}),
    ("GRANT SELECT ON t TO PUBLIC", {"t": ("ACCESS SHARE", "")}),
    ("CREATE OR REPLACE VIEW v AS SELECT id FROM t WHERE id > 0", {"v": (ACCESS_EXCLUSIVE,)}),
    ("DROP VIEW v", {"v": (ACCESS_EXCLUSIVE,)}),
    ("DROP INDEX i_t_b", {"i_t_b": (ACCESS_EXCLUSIVE,)}),
    ("TRUNCATE t CASCADE", {"t": (ACCESS_EXCLUSIVE,)}),
    ("LOCK TABLE t IN SHARE MODE", {"t": ("SHARE",)}),
    ("UPDATE t SET b = b WHERE id < 10", {"t": ("ROW EXCLUSIVE",)}),
    ("DELETE FROM t WHERE id < 10", {"t": ("ROW EXCLUSIVE",)}),
    ("INSERT INTO r VALUES (5000)", {"r": ("ROW EXCLUSIVE",)}),
    ("CREATE TABLE p_2021 PARTITION OF p FOR VALUES FROM ('2021-01-01') TO ('2022-01-01')",
     {"p": (ACCESS_EXCLUSIVE,)}),
    ("ALTER TABLE p ATTACH PARTITION p_loose FOR VALUES FROM ('2022-01-01') TO ('2023-01-01')",
     {"p": ("SHARE UPDATE EXCLUSIVE",), "p_loose": (ACCESS_EXCLUSIVE,)}),
    ("ALTER TABLE p DETACH PARTITION p_default", {"p": (ACCESS_EXCLUSIVE,)}),
    ("CREATE STATISTICS s_t ON a, b FROM t", {"t": ("SHARE UPDATE EXCLUSIVE",)}),
    ("REINDEX INDEX i_t_b", {"i_t_b": (ACCESS_EXCLUSIVE,)}),
]

_MODES = {"AccessShareLock": "ACCESS SHARE", "RowShareLock": "ROW SHARE",
          "RowExclusiveLock": "ROW EXCLUSIVE",
          "ShareUpdateExclusiveLock": "SHARE UPDATE EXCLUSIVE", "ShareLock": "SHARE",
          "ShareRowExclusiveLock": "SHARE ROW EXCLUSIVE", "ExclusiveLock": "EXCLUSIVE",
          "AccessExclusiveLock": ACCESS_EXCLUSIVE}


@pytest.fixture
def lab(pg_url: str) -> str:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(SETUP)
    return pg_url


def held(conn: psycopg.Connection[Any], oid: int) -> str:
    modes = [_MODES[str(r[0])] for r in conn.execute(
        "SELECT mode FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'relation'"
        " AND relation = %s AND granted", (oid,)).fetchall()]
    return max(modes, key=LOCKS.index) if modes else ""


def observed(conn: psycopg.Connection[Any], sql: str, names: list[str]) -> dict[str, Any]:
    """Run ``sql`` in a transaction that rolls back; what it locked, rewrote and scanned."""
    oids = {n: conn.execute("SELECT to_regclass(%s)::oid", (n,)).fetchone()[0] for n in names}
    tree = "SELECT coalesce(sum(seq_scan), 0) FROM pg_stat_xact_all_tables WHERE relid IN " \
        "(SELECT relid FROM pg_partition_tree('t') UNION SELECT 't'::regclass " \
        "UNION SELECT relid FROM pg_partition_tree('p'))"
    result: dict[str, Any] = {}
    with conn.transaction():
        files = conn.execute("SELECT relfilenode FROM pg_class WHERE oid = 't'::regclass"
                             ).fetchone()
        scans = conn.execute(tree).fetchone()
        conn.execute(sql)
        locks = {n: held(conn, oid) for n, oid in oids.items() if oid is not None}
        after_files = conn.execute("SELECT relfilenode FROM pg_class WHERE oid = 't'::regclass"
                                   ).fetchone()
        after_scans = conn.execute(tree).fetchone()
        result = {"locks": locks, "rewrote_t": files != after_files,
                  "scanned": bool(after_scans and scans and after_scans[0] > scans[0])}
        raise psycopg.Rollback()
    return result


def test_the_plan_names_the_locks_postgresql_takes(lab: str) -> None:
    wrong: list[str] = []
    with psycopg.connect(lab) as conn:
        for sql, expected in CASES:
            analysis = analyse(pglast.parse_sql(sql)[0].stmt)
            claimed: dict[str, str] = {}
            for effect in analysis.effects:
                if effect.relation:
                    claimed[effect.relation] = max(
                        [claimed.get(effect.relation, ""), effect.lock], key=LOCKS.index)
            seen = observed(conn, sql, list(expected))["locks"]
            for relation, allowed in expected.items():
                if claimed.get(relation) != allowed[0]:
                    wrong.append(f"{sql}: plan says {claimed.get(relation)!r} on {relation},"
                                 f" expected {allowed[0]!r}")
                if seen.get(relation, "") not in allowed:
                    wrong.append(f"{sql}: PostgreSQL took {seen.get(relation)!r} on {relation},"
                                 f" expected one of {allowed}")
    assert wrong == []


REWRITES = [  # statement on t, rewrites t?, scans under the lock?
    ("ALTER TABLE t ADD COLUMN c int", False, False),
    ("ALTER TABLE t ADD COLUMN c timestamptz NOT NULL DEFAULT now()", False, False),
    ("ALTER TABLE t ADD COLUMN c uuid DEFAULT gen_random_uuid()", True, False),
    ("ALTER TABLE t ALTER COLUMN b TYPE text", False, False),
    ("ALTER TABLE t ALTER COLUMN b TYPE varchar(100)", False, False),
    ("ALTER TABLE t ALTER COLUMN b TYPE varchar(10)", True, False),
    ("ALTER TABLE t ALTER COLUMN a TYPE bigint", True, False),
    ("ALTER TABLE t ALTER COLUMN v TYPE numeric(38,2)", False, True),  # re-checks chk_t_v
    ("ALTER TABLE t ALTER COLUMN v TYPE numeric(38,4)", True, False),
    ("ALTER TABLE t ALTER COLUMN ts TYPE timestamp(3)", True, False),
    ("ALTER TABLE t ALTER COLUMN a SET NOT NULL", False, True),
    ("ALTER TABLE t ADD CONSTRAINT chk_a CHECK (a > 0)", False, True),
    ("ALTER TABLE t ADD CONSTRAINT chk_a CHECK (a > 0) NOT VALID", False, False),
    ("ALTER TABLE t VALIDATE CONSTRAINT chk_t_id", False, True),
    ("ALTER TABLE t SET UNLOGGED", True, False),
]


def test_the_plan_says_which_statements_rewrite_or_scan(lab: str) -> None:
    wrong: list[str] = []
    with psycopg.connect(lab) as conn:
        planner = PostgresPlanner(conn, MigrateOptions())
        for sql, rewrite, scan in REWRITES:
            plan = planner.statement(1, sql, analyse(pglast.parse_sql(sql)[0].stmt),
                                     "transaction")
            claims = (any(t.rewrite for t in plan.targets), any(t.scan for t in plan.targets))
            seen = observed(conn, sql, ["t"])
            # a rewrite reads every row too: it counts as a scan in the statistics
            truth = (seen["rewrote_t"], seen["scanned"] and not seen["rewrote_t"])
            if claims != (rewrite, scan) or truth != claims:
                wrong.append(f"{sql}: plan (rewrite, scan) = {claims}, PostgreSQL {truth},"
                             f" expected {(rewrite, scan)}")
    assert wrong == [], "\n".join(wrong)


def test_type_names_match_format_type(lab: str) -> None:
    types = ["int", "bigint", "smallint", "numeric(38,2)", "numeric", "varchar(10)", "text",
             "character varying", "char(3)", "timestamptz", "timestamp(3) with time zone",
             "timestamp", "time(2)", "double precision", "real", "boolean", "uuid", "jsonb",
             "bytea", "inet", "interval", "varchar(20)[]", "bit varying(5)", "date"]
    with psycopg.connect(lab) as conn:
        for kind in types:
            conn.execute(f"CREATE TEMP TABLE probe (c {kind})")
            actual = conn.execute("SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
                                  " WHERE attrelid = 'probe'::regclass AND attname = 'c'"
                                  ).fetchone()
            parsed = pglast.parse_sql(f"CREATE TABLE x (c {kind})")[0].stmt
            assert type_text(parsed.tableElts[0].typeName) == actual[0], kind
            conn.execute("DROP TABLE probe")


def test_binary_compatibility_rules() -> None:
    assert binary_compatible("numeric(15,2)", "numeric(38,2)")
    assert not binary_compatible("numeric(38,2)", "numeric(15,2)")
    assert not binary_compatible("numeric(15,2)", "numeric(38,4)")
    assert binary_compatible("numeric(15,2)", "numeric")
    assert binary_compatible("character varying(50)", "text")
    assert binary_compatible("character varying(50)", "character varying(60)")
    assert not binary_compatible("character varying(50)", "character varying(10)")
    assert binary_compatible("text", "character varying")
    assert not binary_compatible("text", "character varying(10)")
    assert binary_compatible("timestamp(3) with time zone", "timestamp with time zone")
    assert binary_compatible("timestamp without time zone", "timestamp with time zone") is None
    assert not binary_compatible("integer", "bigint")


@pytest.mark.slow
def test_migration_008_rewrites_nothing_and_scans_nothing_under_its_lock(
        pg_admin_url: str, tmp_path: Path) -> None:
    """What `migrate plan` says about 008 on a populated database, and what happens: no
    partition gets a new file, no partition is scanned before 009, and 009 scans them
    under SHARE UPDATE EXCLUSIVE."""
    from tests.conftest import create_database, drop_database, fresh_name

    name = fresh_name()
    url = create_database(pg_admin_url, name)
    try:
        driver = PostgresDriver(url)
        migrator = Migrator(driver, discover(migrations_dir("postgresql")))
        migrator.up(target=7)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("INSERT INTO organizations (id, name, slug)"
                         " VALUES ('00000000-0000-4000-8000-00000000000a', 'A', 'a')")
            conn.execute("INSERT INTO campaigns (org_id, id, name) VALUES"
                         " ('00000000-0000-4000-8000-00000000000a',"
                         "  '00000000-0000-4000-8000-0000000000c1', 'c')")
            conn.execute("INSERT INTO campaign_metrics (org_id, campaign_id, metric_date,"
                         " dsp_type, spend) SELECT '00000000-0000-4000-8000-00000000000a',"
                         " '00000000-0000-4000-8000-0000000000c1', current_date - i % 40,"
                         " 'd' || i, 1 FROM generate_series(1, 4000) i")
            conn.execute("ANALYZE campaign_metrics")
            files = dict(conn.execute(
                "SELECT relid::regclass::text, pg_relation_filenode(relid)"
                " FROM pg_partition_tree('campaign_metrics') WHERE isleaf").fetchall())
        plans = {p.label: p for p in migrator.plan()}
        wide = plans["008_wide_campaign_metrics_money"]
        assert wide.severity == "ok", [s.why for s in wide.statements]
        types = [t for s in wide.statements for t in s.targets if "TYPE numeric(38,2)" in t.action]
        assert types and all(not t.rewrite and not t.scan and t.rows == 4000 for t in types)
        assert all("binary compatible, no rewrite" in t.note for t in types)
        validate = plans["009_validate_campaign_metrics_money"].statements[0]
        assert validate.lock == "SHARE UPDATE EXCLUSIVE" and validate.targets[0].scan
        migrator.up()
        driver.close()
        with psycopg.connect(url) as conn:
            after = dict(conn.execute(
                "SELECT relid::regclass::text, pg_relation_filenode(relid)"
                " FROM pg_partition_tree('campaign_metrics') WHERE isleaf").fetchall())
            kinds = conn.execute(
                "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid ="
                " 'campaign_metrics'::regclass AND attname IN ('spend', 'revenue')").fetchall()
            valid = conn.execute("SELECT convalidated FROM pg_constraint WHERE conrelid ="
                                 " 'campaign_metrics'::regclass AND conname ="
                                 " 'chk_campaign_metrics_money'").fetchone()
        assert after == files  # not one partition rewritten
        assert kinds == [("numeric(38,2)",), ("numeric(38,2)",)]
        assert valid == (True,)
    finally:
        drop_database(pg_admin_url, name)


@pytest.mark.slow
def test_migrate_plan_through_the_cli_prints_text_when_piped_and_json(pg_url: str,
                                                                      tmp_path: Path) -> None:
    env = {"PLATFORMDB_POSTGRES_URL": pg_url}
    assert cli("migrate", "up", "--store", "postgresql", "--to", "7", env=env).returncode == 0
    piped = cli("migrate", "plan", "--store", "postgresql", env=env)
    assert piped.returncode == 0, piped.stderr
    assert "postgresql: would apply 008_wide_campaign_metrics_money" in piped.stdout
    assert "| ALTER TABLE public.campaign_metrics" in piped.stdout  # the full statement
    assert "binary compatible, no rewrite" in piped.stdout
    as_json = cli("migrate", "plan", "--store", "postgresql", "--json", env=env)
    plans = json.loads(as_json.stdout)
    assert [p["label"] for p in plans][:2] == ["008_wide_campaign_metrics_money",
                                                "009_validate_campaign_metrics_money"]
    assert plans[0]["statements"][0]["lock"] == ACCESS_EXCLUSIVE
    dry = cli("migrate", "up", "--store", "postgresql", "--dry-run", env=env)
    assert dry.returncode == 0 and "would apply 008_wide_campaign_metrics_money" in dry.stdout
    assert "VALIDATE CONSTRAINT" in dry.stdout


@pytest.mark.slow
def test_a_check_added_to_a_live_table_is_flagged_with_its_safe_alternative(
        pg_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    shutil.copytree(migrations_dir("postgresql"), folder)
    driver = PostgresDriver(pg_url)
    Migrator(driver, discover(folder)).up()
    driver.close()
    with psycopg.connect(pg_url, autocommit=True) as conn:  # campaigns with rows
        conn.execute("INSERT INTO organizations (id, name, slug)"
                     " VALUES ('00000000-0000-4000-8000-00000000000b', 'B', 'b')")
    bad = f"{discover(folder)[-1].version + 1:03d}_bad"  # the next number, whatever it is
    (folder / f"{bad}.sql").write_text(
        f"-- {bad}: a CHECK that scans a live table\n"
        "ALTER TABLE public.organizations ADD CONSTRAINT chk_x CHECK (name <> '');\n")
    (folder / f"{bad}.down.sql").write_text("ALTER TABLE public.organizations"
                                            " DROP CONSTRAINT chk_x;\n")
    driver = PostgresDriver(pg_url)
    try:
        plans = Migrator(driver, discover(folder)).plan()
    finally:
        driver.close()
    assert plans[0].severity == "danger"
    assert "NOT VALID" in plans[0].statements[0].instead[0]
