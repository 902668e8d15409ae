-- Row triggers of the tenant tables (reference copy; the source of truth is
-- 006_tamper_proof_audit.sql): updated_at maintenance, the audit trail and the
-- etl_jobs status machine. audit_row_change() writes one audit_logs row per
-- INSERT, UPDATE and DELETE as platform_auditor, with the secret columns and
-- every secret-looking key inside JSON values masked (mask_secrets()).
CREATE OR REPLACE FUNCTION public.set_updated_at() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

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

CREATE OR REPLACE FUNCTION public.etl_jobs_transition() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NEW.status IS NOT DISTINCT FROM OLD.status THEN
        RETURN NEW;
    END IF;
    IF (OLD.status, NEW.status) NOT IN (
            ('pending', 'running'), ('pending', 'cancelled'),
            ('running', 'succeeded'), ('running', 'failed'), ('running', 'cancelled'),
            ('running', 'pending'), ('failed', 'pending')) THEN
        RAISE EXCEPTION 'etl_jobs %: invalid status transition % -> %', OLD.id, OLD.status, NEW.status
            USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.status = 'pending' AND OLD.attempts >= NEW.max_attempts THEN
        RAISE EXCEPTION 'etl_jobs %: no attempts left (% of %)', OLD.id, OLD.attempts, NEW.max_attempts
            USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.status = 'running' THEN
        NEW.attempts := OLD.attempts + 1;
        NEW.started_at := now();
        NEW.finished_at := NULL;
        NEW.error := NULL;
    ELSIF NEW.status IN ('succeeded', 'failed', 'cancelled') THEN
        NEW.finished_at := now();
    ELSE
        NEW.started_at := NULL;
        NEW.finished_at := NULL;
    END IF;
    RETURN NEW;
END
$$;
