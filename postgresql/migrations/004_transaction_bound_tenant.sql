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
-- The helpers are SQL functions with a standard body (BEGIN ATOMIC): parsed
-- once, at creation, with every name bound to its object, so no search_path
-- or temporary object (a temp table named `uuid`...) can change what they
-- mean at run time, and the planner still inlines them into the policies of
-- 001, where the comparison becomes an index condition evaluated once per
-- index scan. (Wrapping the call as `(SELECT public.current_org_id())`, an
-- InitPlan, was measured slower for tenant queries: every tenant index leads
-- with org_id, so it saved no per-row work and added a subplan to plan:
-- measured with EXPLAIN and bench/bench_postgres.py.) The binding is computed from now() with date_part
-- (float8 arithmetic, text of a bigint): cheap, and independent of DateStyle,
-- TimeZone and extra_float_digits.
--
-- Idempotent: CREATE OR REPLACE.

CREATE OR REPLACE FUNCTION public.tenant_txn_key() RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT (pg_catalog.date_part('epoch', pg_catalog.now()) * 1000000)::bigint::text;
END;

CREATE OR REPLACE FUNCTION public.current_org_id() RETURNS uuid
    LANGUAGE sql STABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT CASE WHEN pg_catalog.current_setting('app.tenant_txn', true) = public.tenant_txn_key()
                THEN NULLIF(pg_catalog.current_setting('app.current_org_id', true), '')::uuid
           END;
END;

CREATE OR REPLACE FUNCTION public.current_app_user_id() RETURNS uuid
    LANGUAGE sql STABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT CASE WHEN pg_catalog.current_setting('app.tenant_txn', true) = public.tenant_txn_key()
                THEN NULLIF(pg_catalog.current_setting('app.current_user_id', true), '')::uuid
           END;
END;

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
