-- Undo 010_tenant_import_path: audit_row_change() as 006 left it (every
-- row change audited, whatever the session's settings).

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
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        v_old := to_jsonb(OLD);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        v_new := to_jsonb(NEW);
    END IF;
    v_row := coalesce(v_new, v_old);
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
