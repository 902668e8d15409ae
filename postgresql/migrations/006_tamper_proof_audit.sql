-- 006_tamper_proof_audit: audit rows cannot be forged or rewritten, and
-- secrets inside JSON never reach the trail (issue 14, points 6 and 8).
--
-- Why: platform_app could INSERT into audit_logs with any db_user, txid and
-- created_at (a back-dated row in another user's name succeeded), and the
-- trigger masked only the three secret columns: an api_key inside
-- dsp_connectors.config or a reset token inside notifications.payload was
-- written to the trail in clear.
--
-- Now:
--   * only the audit trigger and log_audit_event() write audit rows; both run
--     as platform_auditor and fill who (session_user, the tenant's user), when
--     (now(), the transaction id) and which tenant (current_org_id()) from
--     the server, never from the caller. No role holds INSERT, UPDATE or
--     DELETE on audit_logs but platform_auditor's INSERT; a trigger refuses
--     every UPDATE, the owner's included (retention drops whole months);
--   * mask_secrets() replaces the value of every key that looks like a
--     secret (password, passphrase, secret, token, api_key / apikey,
--     credential, private_key, access_key, authorization, cookie; any case, at
--     any depth, in objects inside arrays too) with "***"; the trigger applies
--     it to every JSON value of the row, on top of masking the secret columns;
--   * the three trigger functions pin search_path = pg_catalog, pg_temp and
--     name every table and function with its schema.
--
-- Idempotent: CREATE OR REPLACE, REVOKE/GRANT, CREATE OR REPLACE TRIGGER.

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

CREATE OR REPLACE FUNCTION public.mask_secrets(p_value jsonb) RETURNS jsonb
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c_secret constant text :=
        'passw|passphrase|secret|token|api[-_ ]?key|credential|private[-_ ]?key|access[-_ ]?key'
        '|authorization|cookie';
    v_masked jsonb;
BEGIN
    -- No key can match when the whole document does not: the common case
    -- costs one regular expression over the text.
    IF p_value IS NULL OR jsonb_typeof(p_value) NOT IN ('object', 'array')
            OR p_value::text !~* c_secret THEN
        RETURN p_value;
    END IF;
    IF jsonb_typeof(p_value) = 'object' THEN
        SELECT coalesce(jsonb_object_agg(e.key, CASE WHEN e.key ~* c_secret THEN '"***"'::jsonb
                                                     ELSE public.mask_secrets(e.value) END),
                        '{}'::jsonb)
          INTO v_masked
          FROM jsonb_each(p_value) AS e;
    ELSE
        SELECT coalesce(jsonb_agg(public.mask_secrets(a.value) ORDER BY a.ordinality), '[]'::jsonb)
          INTO v_masked
          FROM jsonb_array_elements(p_value) WITH ORDINALITY AS a;
    END IF;
    RETURN v_masked;
END
$$;

-- An event that is not a row change (a sign-in, an export, a permission
-- check that failed) in the current tenant's trail. The caller chooses what
-- happened; the server fills in who, when and which tenant. INSERT, UPDATE
-- and DELETE are the trigger's words: a caller cannot pose as a row change.
CREATE OR REPLACE FUNCTION public.log_audit_event(
    p_action text, p_resource_type text, p_resource_id text DEFAULT NULL,
    p_details jsonb DEFAULT NULL)
    RETURNS uuid
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_org uuid := public.current_org_id();
    v_id uuid := gen_random_uuid();
BEGIN
    IF v_org IS NULL THEN
        RAISE EXCEPTION 'log_audit_event: no tenant is set in this transaction (call set_tenant first)'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF upper(p_action) IN ('INSERT', 'UPDATE', 'DELETE') THEN
        RAISE EXCEPTION 'log_audit_event: % is recorded by the audit trigger only', upper(p_action)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO public.audit_logs (org_id, id, user_id, action, resource_type, resource_id,
                                   new_values)
    VALUES (v_org, v_id, public.current_app_user_id(), p_action, p_resource_type, p_resource_id,
            public.mask_secrets(p_details));
    RETURN v_id;
END
$$;

CREATE OR REPLACE FUNCTION public.audit_logs_immutable() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION 'audit_logs rows cannot be changed'
        USING ERRCODE = 'insufficient_privilege';
END
$$;

ALTER FUNCTION public.log_audit_event(text, text, text, jsonb) OWNER TO platform_auditor;

CREATE OR REPLACE TRIGGER trg_audit_logs_immutable BEFORE UPDATE ON public.audit_logs
    FOR EACH ROW EXECUTE FUNCTION public.audit_logs_immutable();

REVOKE ALL ON FUNCTION public.mask_secrets(jsonb), public.log_audit_event(text, text, text, jsonb),
    public.audit_logs_immutable()
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.mask_secrets(jsonb) TO platform_auditor;
GRANT EXECUTE ON FUNCTION public.log_audit_event(text, text, text, jsonb)
    TO platform_app, platform_auth;

-- Append-only, and only through the two functions above.
REVOKE INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON public.audit_logs
    FROM platform_app, platform_readonly, platform_etl, platform_token_validator, platform_auth,
         platform_connector, platform_dictionary, platform_secret_reader,
         platform_dictionary_reader;
