-- The audit trail's other writers and guards (reference copy; the source of
-- truth is 006_tamper_proof_audit.sql): mask_secrets() for JSON values,
-- log_audit_event() for events that are not row changes (who and when filled
-- in by the server), and the trigger function that refuses any UPDATE of an
-- audit row.
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
