-- 004_transaction_bound_tenant: the tenant context counts only in the
-- transaction that set it (issue 14, point 4).
--
-- Why: until now current_org_id() honoured any value of app.current_org_id,
-- including a session-level `SET app.current_org_id = ...` or
-- set_config(..., false), which survives COMMIT and hands that tenant to the
-- next transaction on a pooled connection (psycopg pool, PgBouncer). Now
-- set_tenant() also stores a binding to the current transaction
-- (app.tenant_txn = the transaction's start time in microseconds, now()), and
-- the helpers return NULL unless that binding matches the running
-- transaction. A session-level value therefore sees nothing and writes
-- nothing once its transaction ends.
--
-- Why the transaction start time and not txid_current(): txid_current()
-- assigns a transaction id even to a read-only transaction (a WAL record, a
-- slot in the xid space, and an error on a hot standby), while now() is read
-- from memory. Two transactions of one session cannot share a start time
-- unless they start within the same microsecond, and even then only a value
-- someone set deliberately at session level could match.
--
-- The readers are small PL/pgSQL functions with a pinned search_path
-- (pg_catalog, pg_temp) and every name qualified, so no temporary object (a
-- temp table named `uuid`...) changes what they mean; the policies call them
-- as `(SELECT public.current_org_id())`, an InitPlan run once per query.
-- Measured on the benchmark's tenant reads (EXPLAIN planning + execution, 3
-- queries): the owner without RLS 231 us; these helpers through an InitPlan
-- 294 us; a SQL helper inlined into every policy 357 us, because tenant
-- tables are partitioned, so every execution is planned afresh (custom
-- plans) and inlining the helper's body is paid on each one. The binding key
-- (tenant_txn_key(), a SQL function with a standard body, bound at creation)
-- is computed from now() with date_part: float8 arithmetic and the text of a
-- bigint, cheap and independent of DateStyle, TimeZone and
-- extra_float_digits.
--
-- Idempotent: CREATE OR REPLACE and ALTER POLICY.

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

REVOKE ALL ON FUNCTION public.tenant_txn_key() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.tenant_txn_key()
    TO platform_app, platform_readonly, platform_etl, platform_auditor, platform_token_validator;

-- The same rule as before (a row belongs to the transaction's tenant), with
-- the helper run once per query.
ALTER POLICY organizations_tenant_isolation ON public.organizations
    USING (id = (SELECT public.current_org_id()))
    WITH CHECK (id = (SELECT public.current_org_id()));
ALTER POLICY users_tenant_isolation ON public.users
    USING (org_id = (SELECT public.current_org_id()))
    WITH CHECK (org_id = (SELECT public.current_org_id()));
ALTER POLICY user_roles_tenant_isolation ON public.user_roles
    USING (org_id = (SELECT public.current_org_id()))
    WITH CHECK (org_id = (SELECT public.current_org_id()));
ALTER POLICY auth_tokens_tenant_isolation ON public.auth_tokens
    USING (org_id = (SELECT public.current_org_id()))
    WITH CHECK (org_id = (SELECT public.current_org_id()));
ALTER POLICY dsp_connectors_tenant_isolation ON public.dsp_connectors
    USING (org_id = (SELECT public.current_org_id()))
    WITH CHECK (org_id = (SELECT public.current_org_id()));
ALTER POLICY campaigns_tenant_isolation ON public.campaigns
    USING (org_id = (SELECT public.current_org_id()))
    WITH CHECK (org_id = (SELECT public.current_org_id()));
ALTER POLICY campaign_metrics_tenant_isolation ON public.campaign_metrics
    USING (org_id = (SELECT public.current_org_id()))
    WITH CHECK (org_id = (SELECT public.current_org_id()));
ALTER POLICY etl_jobs_tenant_isolation ON public.etl_jobs
    USING (org_id = (SELECT public.current_org_id()))
    WITH CHECK (org_id = (SELECT public.current_org_id()));
ALTER POLICY notifications_tenant_isolation ON public.notifications
    USING (org_id = (SELECT public.current_org_id()))
    WITH CHECK (org_id = (SELECT public.current_org_id()));
ALTER POLICY audit_logs_tenant_isolation ON public.audit_logs
    USING (org_id = (SELECT public.current_org_id()))
    WITH CHECK (org_id = (SELECT public.current_org_id()));
