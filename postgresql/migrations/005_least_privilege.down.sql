-- Undo 005_least_privilege: the grants of 001 (whole tables, readers and ETL
-- on everything), no secret functions, no dictionary views, the database
-- open to PUBLIC again. The roles stay: they belong to the cluster, and other
-- databases may use them.
DROP POLICY IF EXISTS campaigns_dictionary_read ON public.campaigns;
DROP POLICY IF EXISTS organizations_dictionary_read ON public.organizations;
DROP VIEW IF EXISTS public.dictionary_campaigns;
DROP VIEW IF EXISTS public.dictionary_organizations;
DROP FUNCTION IF EXISTS public.dsp_connector_credentials(uuid);
DROP FUNCTION IF EXISTS public.user_password_hash(text);

CREATE OR REPLACE FUNCTION public.validate_auth_token(p_token_hash text)
    RETURNS TABLE (org_id uuid, user_id uuid, token_id uuid, token_type text,
                   expires_at timestamptz)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, public
AS $$
    SELECT t.org_id, t.user_id, t.id, t.token_type::text, t.expires_at
      FROM public.auth_tokens t
     WHERE t.token_hash = p_token_hash
       AND t.revoked_at IS NULL
       AND t.expires_at > now()
$$;

REVOKE ALL ON ALL TABLES IN SCHEMA public
    FROM platform_app, platform_readonly, platform_etl, platform_auditor,
         platform_token_validator, platform_auth, platform_connector, platform_dictionary,
         platform_secret_reader, platform_dictionary_reader;
REVOKE ALL ON FUNCTION public.current_org_id(), public.current_app_user_id(),
    public.tenant_txn_key(), public.set_tenant(uuid, uuid), public.validate_auth_token(text)
    FROM platform_auth, platform_connector, platform_dictionary, platform_secret_reader,
         platform_dictionary_reader;
REVOKE ALL ON SCHEMA public
    FROM platform_auth, platform_connector, platform_dictionary, platform_secret_reader,
         platform_dictionary_reader;

GRANT SELECT, INSERT, UPDATE, DELETE ON public.organizations, public.users, public.user_roles,
    public.auth_tokens, public.dsp_connectors, public.campaigns, public.campaign_metrics,
    public.etl_jobs, public.notifications TO platform_app;
GRANT SELECT, INSERT ON public.audit_logs TO platform_app;
GRANT SELECT ON public.permissions, public.role_permissions, public.campaign_performance,
    public.user_permissions TO platform_app;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO platform_readonly, platform_etl;
GRANT INSERT, UPDATE, DELETE ON public.campaign_metrics, public.etl_jobs TO platform_etl;
GRANT INSERT ON public.audit_logs TO platform_auditor;
GRANT SELECT ON public.auth_tokens TO platform_token_validator;

ALTER DEFAULT PRIVILEGES GRANT EXECUTE ON FUNCTIONS TO PUBLIC;
ALTER DEFAULT PRIVILEGES GRANT USAGE ON TYPES TO PUBLIC;

DO $$
BEGIN
    EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO PUBLIC', current_database());
    EXECUTE format('REVOKE ALL ON DATABASE %I FROM platform_app, platform_readonly, platform_etl,'
                   ' platform_auth, platform_connector, platform_dictionary', current_database());
END
$$;
