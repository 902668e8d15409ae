-- Undo 004_transaction_bound_tenant: the helpers read the settings again
-- without a transaction binding, and the policies call them directly, as
-- 001 defined them.
ALTER POLICY organizations_tenant_isolation ON public.organizations
    USING (id = public.current_org_id()) WITH CHECK (id = public.current_org_id());
ALTER POLICY users_tenant_isolation ON public.users
    USING (org_id = public.current_org_id()) WITH CHECK (org_id = public.current_org_id());
ALTER POLICY user_roles_tenant_isolation ON public.user_roles
    USING (org_id = public.current_org_id()) WITH CHECK (org_id = public.current_org_id());
ALTER POLICY auth_tokens_tenant_isolation ON public.auth_tokens
    USING (org_id = public.current_org_id()) WITH CHECK (org_id = public.current_org_id());
ALTER POLICY dsp_connectors_tenant_isolation ON public.dsp_connectors
    USING (org_id = public.current_org_id()) WITH CHECK (org_id = public.current_org_id());
ALTER POLICY campaigns_tenant_isolation ON public.campaigns
    USING (org_id = public.current_org_id()) WITH CHECK (org_id = public.current_org_id());
ALTER POLICY campaign_metrics_tenant_isolation ON public.campaign_metrics
    USING (org_id = public.current_org_id()) WITH CHECK (org_id = public.current_org_id());
ALTER POLICY etl_jobs_tenant_isolation ON public.etl_jobs
    USING (org_id = public.current_org_id()) WITH CHECK (org_id = public.current_org_id());
ALTER POLICY notifications_tenant_isolation ON public.notifications
    USING (org_id = public.current_org_id()) WITH CHECK (org_id = public.current_org_id());
ALTER POLICY audit_logs_tenant_isolation ON public.audit_logs
    USING (org_id = public.current_org_id()) WITH CHECK (org_id = public.current_org_id());

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
