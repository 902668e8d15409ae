-- Undo 006_tamper_proof_audit: the trigger functions of 001 (secret columns
-- masked, JSON values in clear, search_path with public), no
-- log_audit_event(), audit rows updatable by the owner, and platform_app's
-- INSERT on audit_logs back as 005 left it.
DROP TRIGGER IF EXISTS trg_audit_logs_immutable ON public.audit_logs;
DROP FUNCTION IF EXISTS public.audit_logs_immutable();
DROP FUNCTION IF EXISTS public.log_audit_event(text, text, text, jsonb);

-- Row triggers of the tenant tables: updated_at maintenance, the audit trail
-- and the etl_jobs status machine.
CREATE OR REPLACE FUNCTION public.set_updated_at() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog
AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

-- Every INSERT, UPDATE and DELETE on an audited table writes one audit_logs
-- row: who (app.current_user_id and the database role), what (operation,
-- table, row key) and what changed (old and new values of the changed
-- columns only), with secrets masked. It runs as platform_auditor, the only
-- role a policy lets append to audit_logs without a tenant, so services
-- cannot forge or skip audit rows and owner-run maintenance is audited too.
-- The trigger passes the parent table's name: on a partition, TG_TABLE_NAME
-- would name the partition.
CREATE OR REPLACE FUNCTION public.audit_row_change() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, public
AS $$
DECLARE
    v_secret text[] := ARRAY['password_hash', 'token_hash', 'credentials_encrypted'];
    v_old jsonb;
    v_new jsonb;
    v_changed text[];
    v_row jsonb;
    v_key text;
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
          FROM jsonb_each(v_new) n
         WHERE n.value IS DISTINCT FROM v_old -> n.key AND n.key <> 'updated_at';
        IF cardinality(v_changed) = 0 THEN
            RETURN NULL;  -- a no-op update leaves no audit row
        END IF;
        SELECT jsonb_object_agg(key, v_old -> key) INTO v_old FROM unnest(v_changed) AS key;
        SELECT jsonb_object_agg(key, v_new -> key) INTO v_new FROM unnest(v_changed) AS key;
    END IF;
    FOREACH v_key IN ARRAY v_secret LOOP
        IF v_old ? v_key THEN v_old := jsonb_set(v_old, ARRAY[v_key], '"***"'); END IF;
        IF v_new ? v_key THEN v_new := jsonb_set(v_new, ARRAY[v_key], '"***"'); END IF;
    END LOOP;
    INSERT INTO public.audit_logs
        (org_id, user_id, action, resource_type, resource_id, old_values, new_values,
         changed_fields)
    VALUES (
        coalesce((v_row ->> 'org_id')::uuid, (v_row ->> 'id')::uuid),
        current_app_user_id(),
        TG_OP,
        coalesce(TG_ARGV[0], TG_TABLE_NAME),
        coalesce(v_row ->> 'id', concat_ws(':', v_row ->> 'user_id', v_row ->> 'role')),
        v_old,
        v_new,
        v_changed);
    RETURN NULL;
END
$$;

-- etl_jobs moves pending -> running -> succeeded | failed | cancelled, a
-- failed (or stalled running) job may go back to pending for a retry while
-- attempts remain, and succeeded / cancelled are final. The trigger keeps
-- attempts and the timestamps consistent with the transition.
CREATE OR REPLACE FUNCTION public.etl_jobs_transition() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog
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

DROP FUNCTION IF EXISTS public.mask_secrets(jsonb);

GRANT INSERT ON public.audit_logs TO platform_app;
