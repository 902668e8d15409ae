-- 007_hardening: row-level security on every partition, maintenance
-- functions that cannot be hijacked through search_path, and CHECKs that keep
-- weak password hashes and clear-text DSP credentials out (issue 14, points
-- 7 and 9).
--
-- Why:
--   * RLS was enabled and forced on the partitioned parents only; a partition
--     queried by name (partitions.users_p3) answered without any policy for
--     whoever could reach it. Every partition now has RLS enabled and forced
--     and no policy, so reading a partition directly returns nothing and
--     writing one fails, for every role but a superuser or BYPASSRLS; the
--     application always goes through the parents, where the tenant policies
--     apply. ensure_date_partitions() does the same for the months it creates.
--   * ensure_date_partitions() and drop_date_partitions_before() searched
--     `pg_catalog, public` (and, implicitly, pg_temp first for tables and
--     types); they now pin `pg_catalog, pg_temp` and qualify every name. As
--     the owner is subject to the forced RLS of the default partition, they
--     lift FORCE on it for their own transaction when RLS would hide its rows
--     (the ACCESS EXCLUSIVE lock that takes keeps every other session out
--     until COMMIT, and FORCE is back before it).
--   * users.password_hash: bcrypt with a cost of at least 10 (was any cost).
--   * dsp_connectors.credentials_encrypted: the envelope format written by
--     platformdb.secrets (magic 'PDBE', version 1, the key id, then the
--     wrapped data key and the AES-GCM ciphertext), and the key id inside the
--     value equal to credentials_key_id. Clear text cannot pass.
--   Both CHECKs are added NOT VALID (new rows are checked at once) and then
--   validated; when old rows violate them the migration says so and leaves
--   them NOT VALID instead of failing.
--
-- Idempotent: CREATE OR REPLACE, ALTER TABLE ... ENABLE/FORCE, DROP/ADD
-- CONSTRAINT.

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

-- Every partition of every partitioned table in public (the tenant tables),
-- at every level, including the months ensure_date_partitions created
-- before this migration.
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
        EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY',
                       v_partition);
    END LOOP;
END
$$;

-- The two partitions 001 creates by name, stated here too so that
-- `platformdb lint` (which does not run DO blocks) sees them covered.
ALTER TABLE partitions.campaign_metrics_default
    ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
ALTER TABLE partitions.audit_logs_default
    ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;

-- lint: allow ban-drop-constraint replaced at once by a stricter CHECK of the same name
ALTER TABLE public.users DROP CONSTRAINT IF EXISTS chk_users_password_hash;
ALTER TABLE public.users ADD CONSTRAINT chk_users_password_hash
    CHECK (password_hash ~ '^\$2[aby]\$(1[0-9]|2[0-9]|3[01])\$[./A-Za-z0-9]{53}$') NOT VALID;
COMMENT ON COLUMN public.users.password_hash IS
    'bcrypt, cost 10 or more (CHECK); never a clear-text password. Readable only through user_password_hash().';

-- lint: allow ban-drop-constraint a rerun (psql -f twice) adds this migration's own CHECK again
ALTER TABLE public.dsp_connectors DROP CONSTRAINT IF EXISTS chk_dsp_connectors_credentials_format;
ALTER TABLE public.dsp_connectors ADD CONSTRAINT chk_dsp_connectors_credentials_format
    CHECK (credentials_encrypted IS NULL OR CASE
        WHEN credentials_key_id IS NULL
             OR credentials_key_id !~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'
             OR octet_length(credentials_encrypted) < 94 + octet_length(credentials_key_id)
             OR substring(credentials_encrypted FROM 1 FOR 5) <> '\x5044424501'::bytea
        THEN false
        ELSE get_byte(credentials_encrypted, 5) = octet_length(credentials_key_id)
             AND substring(credentials_encrypted FROM 7 FOR octet_length(credentials_key_id))
                 = decode(credentials_key_id, 'escape')
    END) NOT VALID;
COMMENT ON COLUMN public.dsp_connectors.credentials_encrypted IS
    'platformdb.secrets envelope (AES-256-GCM, data key wrapped by the key named in'
    ' credentials_key_id, bound to org_id and id); never clear text (CHECK). Readable only through'
    ' dsp_connector_credentials().';

DO $$
BEGIN
    BEGIN
        ALTER TABLE public.users VALIDATE CONSTRAINT chk_users_password_hash;
    EXCEPTION WHEN check_violation THEN
        RAISE NOTICE 'users: some password hashes have a bcrypt cost below 10. They stay until the'
            ' user signs in again (platformdb.auth.needs_rehash); then run: ALTER TABLE public.users'
            ' VALIDATE CONSTRAINT chk_users_password_hash';
    END;
    BEGIN
        ALTER TABLE public.dsp_connectors VALIDATE CONSTRAINT chk_dsp_connectors_credentials_format;
    EXCEPTION WHEN check_violation THEN
        RAISE NOTICE 'dsp_connectors: some credentials are not in the platformdb.secrets format;'
            ' store them again through platformdb.secrets.encrypt, then run: ALTER TABLE'
            ' public.dsp_connectors VALIDATE CONSTRAINT chk_dsp_connectors_credentials_format';
    END;
END
$$;
