-- Tenant context (reference copy; the source of truth is
-- 004_transaction_bound_tenant.sql). Row-level security reads the tenant
-- through current_org_id(), which honours app.current_org_id only when
-- set_tenant() set it in the running transaction (app.tenant_txn holds the
-- transaction's start time). A session-level value is ignored; an unset one
-- yields NULL, which matches no row; a malformed one raises (fails closed).
-- The readers pin search_path and qualify every name, so no temporary object
-- changes them; policies call them once per query, as an InitPlan.
CREATE OR REPLACE FUNCTION public.tenant_txn_key() RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT (pg_catalog.date_part('epoch', pg_catalog.now()) * 1000000)::bigint::text;
END;

CREATE OR REPLACE FUNCTION public.current_org_id() RETURNS pg_catalog.uuid
    LANGUAGE plpgsql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF pg_catalog.current_setting('app.tenant_txn', true) OPERATOR(pg_catalog.=)
            public.tenant_txn_key() THEN
        RETURN NULLIF(pg_catalog.current_setting('app.current_org_id', true), '')::pg_catalog.uuid;
    END IF;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION public.current_app_user_id() RETURNS pg_catalog.uuid
    LANGUAGE plpgsql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF pg_catalog.current_setting('app.tenant_txn', true) OPERATOR(pg_catalog.=)
            public.tenant_txn_key() THEN
        RETURN NULLIF(pg_catalog.current_setting('app.current_user_id', true), '')::pg_catalog.uuid;
    END IF;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION public.set_tenant(p_org_id uuid, p_user_id uuid DEFAULT NULL)
    RETURNS void
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF p_org_id IS NULL THEN
        RAISE EXCEPTION 'set_tenant: org_id must not be NULL'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pg_catalog.set_config('app.current_org_id', p_org_id::text, true),
            pg_catalog.set_config('app.current_user_id', coalesce(p_user_id::text, ''), true),
            pg_catalog.set_config('app.tenant_txn', public.tenant_txn_key(), true);
END
$$;
