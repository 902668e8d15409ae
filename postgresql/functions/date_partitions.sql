-- Date partition maintenance for campaign_metrics and audit_logs (reference
-- copy; the source of truth is 007_hardening.sql). RANGE by month, each month
-- HASH-subpartitioned by org_id, plus a DEFAULT partition so that no row ever
-- fails for lack of a partition. ensure_date_partitions creates missing
-- months (row-level security enabled and forced on each), moving rows that
-- had landed in the default partition; drop_date_partitions_before is the
-- retention side. Both run as the owner (cron, `platformdb partitions
-- ensure` / `platformdb retention apply`).
CREATE OR REPLACE FUNCTION public.ensure_date_partitions(
    p_table text, p_from date, p_months integer DEFAULT 3)
    RETURNS integer
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_parent regclass;
    v_column name;
    v_type text;
    v_default text := p_table || '_default';
    v_unforced boolean := false;
    v_month date;
    v_child text;
    v_low text;
    v_high text;
    v_created integer := 0;
    v_remainder integer;
BEGIN
    IF p_months IS NULL OR p_months < 1 OR p_months > 240 THEN
        RAISE EXCEPTION 'ensure_date_partitions: months must be between 1 and 240, got %', p_months
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_parent := to_regclass(format('public.%I', p_table));
    SELECT a.attname, format_type(a.atttypid, a.atttypmod)
      INTO v_column, v_type
      FROM pg_catalog.pg_partitioned_table p
      JOIN pg_catalog.pg_attribute a ON a.attrelid = p.partrelid AND a.attnum = p.partattrs[0]
     WHERE p.partrelid = v_parent AND p.partstrat = 'r';
    IF v_column IS NULL THEN
        RAISE EXCEPTION 'ensure_date_partitions: % is not a date-partitioned table', p_table
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR i IN 0 .. p_months - 1 LOOP
        v_month := (date_trunc('month', p_from) + make_interval(months => i))::date;
        v_child := format('%s_y%sm%s', p_table, to_char(v_month, 'YYYY'), to_char(v_month, 'MM'));
        CONTINUE WHEN to_regclass(format('partitions.%I', v_child)) IS NOT NULL;
        IF v_type = 'date' THEN
            v_low := v_month::text;
            v_high := (v_month + interval '1 month')::date::text;
        ELSE
            v_low := to_char(v_month, 'YYYY-MM-DD') || ' 00:00:00+00';
            v_high := to_char(v_month + interval '1 month', 'YYYY-MM-DD') || ' 00:00:00+00';
        END IF;
        IF NOT v_unforced
                AND row_security_active(format('partitions.%I', v_default)::regclass) THEN
            EXECUTE format('ALTER TABLE partitions.%I NO FORCE ROW LEVEL SECURITY', v_default);
            v_unforced := true;
        END IF;
        IF to_regclass('pg_temp.platformdb_moved_rows') IS NOT NULL THEN
            DROP TABLE pg_temp.platformdb_moved_rows;
        END IF;
        EXECUTE format(
            'CREATE TEMP TABLE platformdb_moved_rows ON COMMIT DROP AS'
            ' SELECT * FROM partitions.%I WHERE %I >= %L AND %I < %L',
            v_default, v_column, v_low, v_column, v_high);
        EXECUTE format('DELETE FROM partitions.%I WHERE %I >= %L AND %I < %L',
            v_default, v_column, v_low, v_column, v_high);
        EXECUTE format(
            'CREATE TABLE partitions.%I PARTITION OF public.%I FOR VALUES FROM (%L) TO (%L)'
            ' PARTITION BY HASH (org_id)', v_child, p_table, v_low, v_high);
        FOR v_remainder IN 0 .. 3 LOOP
            EXECUTE format(
                'CREATE TABLE partitions.%I PARTITION OF partitions.%I'
                ' FOR VALUES WITH (MODULUS 4, REMAINDER %s)',
                v_child || '_h' || v_remainder, v_child, v_remainder);
        END LOOP;
        EXECUTE format('INSERT INTO partitions.%I SELECT * FROM pg_temp.platformdb_moved_rows',
            v_child);
        DROP TABLE pg_temp.platformdb_moved_rows;
        EXECUTE format('ALTER TABLE partitions.%I ENABLE ROW LEVEL SECURITY,'
                       ' FORCE ROW LEVEL SECURITY', v_child);
        FOR v_remainder IN 0 .. 3 LOOP
            EXECUTE format('ALTER TABLE partitions.%I ENABLE ROW LEVEL SECURITY,'
                           ' FORCE ROW LEVEL SECURITY', v_child || '_h' || v_remainder);
        END LOOP;
        v_created := v_created + 1;
    END LOOP;
    IF v_unforced THEN
        EXECUTE format('ALTER TABLE partitions.%I FORCE ROW LEVEL SECURITY', v_default);
    END IF;
    RETURN v_created;
END
$$;

CREATE OR REPLACE FUNCTION public.drop_date_partitions_before(
    p_table text, p_before date, p_dry_run boolean DEFAULT false)
    RETURNS SETOF text
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_parent regclass;
    v_column name;
    v_default regclass;
    v_unforced boolean := false;
    v_child text;
    v_month date;
BEGIN
    v_parent := to_regclass(format('public.%I', p_table));
    SELECT a.attname INTO v_column
      FROM pg_catalog.pg_partitioned_table p
      JOIN pg_catalog.pg_attribute a ON a.attrelid = p.partrelid AND a.attnum = p.partattrs[0]
     WHERE p.partrelid = v_parent AND p.partstrat = 'r';
    IF v_column IS NULL THEN
        RAISE EXCEPTION 'drop_date_partitions_before: % is not a date-partitioned table', p_table
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR v_child IN
        SELECT c.relname FROM pg_catalog.pg_inherits i
          JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = v_parent AND c.relname ~ '_y[0-9]{4}m[0-9]{2}$'
         ORDER BY c.relname
    LOOP
        v_month := to_date(right(v_child, 8), '"y"YYYY"m"MM');
        CONTINUE WHEN (v_month + interval '1 month')::date > p_before;
        IF NOT p_dry_run THEN
            EXECUTE format('DROP TABLE partitions.%I', v_child);
        END IF;
        RETURN NEXT v_child;
    END LOOP;
    IF NOT p_dry_run THEN
        v_default := format('partitions.%I', p_table || '_default')::regclass;
        IF row_security_active(v_default) THEN
            EXECUTE format('ALTER TABLE %s NO FORCE ROW LEVEL SECURITY', v_default);
            v_unforced := true;
        END IF;
        EXECUTE format('DELETE FROM %s WHERE %I < %L', v_default, v_column, p_before);
        IF v_unforced THEN
            EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', v_default);
        END IF;
    END IF;
END
$$;
