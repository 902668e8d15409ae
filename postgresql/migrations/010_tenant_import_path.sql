-- 010_tenant_import_path: tenant import loads an org's rows with triggers,
-- foreign keys and CHECK constraints on, and needs no superuser (issue 21).
--
-- Why: tenant import ran as a superuser with `session_replication_role =
-- replica`, which switches off every trigger AND every foreign key, so an
-- edited archive could load rows no constraint would have let in. Loading
-- with triggers on makes the audit trigger write a fresh INSERT row for every
-- loaded row, on top of the org's exported trail.
--
-- Now: audit_row_change() writes nothing for a row of the org named by the
-- transaction-local setting `platformdb.tenant_import` (set_config(...,
-- true)), and honours that setting only when the login (session_user) is a
-- member of the role that owns audit_logs: the owner that runs migrations.
-- Any other login (platform_app, platform_etl...) that sets it is audited as
-- before. The importer sets it for the org of the archive only; the org's
-- exported audit rows are then loaded as they are by the owner's COPY.
--
-- Idempotent: CREATE OR REPLACE.

CREATE OR REPLACE FUNCTION public.audit_row_change() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_secret constant text[] := ARRAY['password_hash', 'token_hash', 'credentials_encrypted'];
    v_old jsonb;
    v_new jsonb;
    v_changed text[];
    v_row jsonb;
    v_import text := pg_catalog.current_setting('platformdb.tenant_import', true);
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        v_old := to_jsonb(OLD);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        v_new := to_jsonb(NEW);
    END IF;
    v_row := coalesce(v_new, v_old);
    -- A tenant import loads the org's trail as exported: its own rows write none.
    IF v_import IS NOT NULL AND v_import <> ''
            AND v_import = coalesce(v_row ->> 'org_id', v_row ->> 'id')
            AND pg_catalog.pg_has_role(session_user,
                    (SELECT c.relowner FROM pg_catalog.pg_class c
                      WHERE c.oid = 'public.audit_logs'::pg_catalog.regclass), 'MEMBER') THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'UPDATE' THEN
        SELECT coalesce(array_agg(n.key ORDER BY n.key), '{}')
          INTO v_changed
          FROM jsonb_each(v_new) AS n
         WHERE n.value IS DISTINCT FROM v_old -> n.key AND n.key <> 'updated_at';
        IF cardinality(v_changed) = 0 THEN
            RETURN NULL;
        END IF;
        SELECT jsonb_object_agg(c.key, v_old -> c.key) INTO v_old FROM unnest(v_changed) AS c(key);
        SELECT jsonb_object_agg(c.key, v_new -> c.key) INTO v_new FROM unnest(v_changed) AS c(key);
    END IF;
    SELECT jsonb_object_agg(e.key, CASE WHEN e.key = ANY (v_secret) THEN '"***"'::jsonb
                                        ELSE public.mask_secrets(e.value) END)
      INTO v_old
      FROM jsonb_each(v_old) AS e;
    SELECT jsonb_object_agg(e.key, CASE WHEN e.key = ANY (v_secret) THEN '"***"'::jsonb
                                        ELSE public.mask_secrets(e.value) END)
      INTO v_new
      FROM jsonb_each(v_new) AS e;
    INSERT INTO public.audit_logs
        (org_id, user_id, action, resource_type, resource_id, old_values, new_values,
         changed_fields)
    VALUES (
        coalesce((v_row ->> 'org_id')::uuid, (v_row ->> 'id')::uuid),
        public.current_app_user_id(),
        TG_OP,
        coalesce(TG_ARGV[0], TG_TABLE_NAME),
        coalesce(v_row ->> 'id', concat_ws(':', v_row ->> 'user_id', v_row ->> 'role')),
        v_old,
        v_new,
        v_changed);
    RETURN NULL;
END
$$;
