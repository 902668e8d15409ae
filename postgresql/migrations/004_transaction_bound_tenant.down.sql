-- Undo 004_transaction_bound_tenant: the helpers read the settings again
-- without a transaction binding, as 001 defined them.
CREATE OR REPLACE FUNCTION public.current_org_id() RETURNS uuid
    LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT nullif(current_setting('app.current_org_id', true), '')::uuid
$$;

CREATE OR REPLACE FUNCTION public.current_app_user_id() RETURNS uuid
    LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT nullif(current_setting('app.current_user_id', true), '')::uuid
$$;

CREATE OR REPLACE FUNCTION public.set_tenant(p_org_id uuid, p_user_id uuid DEFAULT NULL)
    RETURNS void
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog
AS $$
BEGIN
    IF p_org_id IS NULL THEN
        RAISE EXCEPTION 'set_tenant: org_id must not be NULL'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM set_config('app.current_org_id', p_org_id::text, true);
    PERFORM set_config('app.current_user_id', coalesce(p_user_id::text, ''), true);
END
$$;

DROP FUNCTION IF EXISTS public.tenant_txn_key();
