-- Undo 007_hardening: the partition functions of 001, no row-level security
-- on partitions (at any level, including months created since), and the
-- CHECKs of 001 (any bcrypt cost; no format for credentials).
CREATE OR REPLACE FUNCTION public.ensure_date_partitions(
    p_table text, p_from date, p_months integer DEFAULT 3)
    RETURNS integer
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, public
AS $$
DECLARE
    v_parent regclass;
    v_column name;
    v_type text;
    v_default text := p_table || '_default';
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
      FROM pg_partitioned_table p
      JOIN pg_attribute a ON a.attrelid = p.partrelid AND a.attnum = p.partattrs[0]
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
        ELSE  -- timestamptz: months in UTC
            v_low := to_char(v_month, 'YYYY-MM-DD') || ' 00:00:00+00';
            v_high := to_char(v_month + interval '1 month', 'YYYY-MM-DD') || ' 00:00:00+00';
        END IF;
        -- Rows of this month that arrived before it existed sit in the default
        -- partition; PostgreSQL refuses the new partition until they move.
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
        v_created := v_created + 1;
    END LOOP;
    RETURN v_created;
END
$$;

CREATE OR REPLACE FUNCTION public.drop_date_partitions_before(
    p_table text, p_before date, p_dry_run boolean DEFAULT false)
    RETURNS SETOF text
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, public
AS $$
DECLARE
    v_parent regclass;
    v_column name;
    v_child text;
    v_month date;
BEGIN
    v_parent := to_regclass(format('public.%I', p_table));
    SELECT a.attname INTO v_column
      FROM pg_partitioned_table p
      JOIN pg_attribute a ON a.attrelid = p.partrelid AND a.attnum = p.partattrs[0]
     WHERE p.partrelid = v_parent AND p.partstrat = 'r';
    IF v_column IS NULL THEN
        RAISE EXCEPTION 'drop_date_partitions_before: % is not a date-partitioned table', p_table
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR v_child IN
        SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
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
        EXECUTE format('DELETE FROM partitions.%I WHERE %I < %L',
            p_table || '_default', v_column, p_before);
    END IF;
END
$$;

DO $$
DECLARE
    v_partition regclass;
BEGIN
    FOR v_partition IN
        SELECT t.relid
          FROM pg_catalog.pg_class c,
               LATERAL pg_catalog.pg_partition_tree(c.oid) AS t
         WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'p'
           AND NOT c.relispartition AND t.level > 0
    LOOP
        EXECUTE format('ALTER TABLE %s NO FORCE ROW LEVEL SECURITY, DISABLE ROW LEVEL SECURITY',
                       v_partition);
    END LOOP;
END
$$;

ALTER TABLE public.dsp_connectors DROP CONSTRAINT IF EXISTS chk_dsp_connectors_credentials_format;
COMMENT ON COLUMN public.dsp_connectors.credentials_encrypted IS
    'Ciphertext (e.g. AES-GCM nonce || ciphertext || tag) produced by the application;'
    ' credentials_key_id names the key version. The database never sees the clear text.';

ALTER TABLE public.users DROP CONSTRAINT IF EXISTS chk_users_password_hash;
ALTER TABLE public.users ADD CONSTRAINT chk_users_password_hash
    CHECK (password_hash ~ '^\$2[aby]\$[0-9]{2}\$[./A-Za-z0-9]{53}$');
COMMENT ON COLUMN public.users.password_hash IS 'bcrypt only (CHECK); never a clear-text password.';
