-- 005_least_privilege: each role reads exactly the tables and columns its job
-- needs, and no service role reads a secret column (issue 14, points 5, 7
-- and 10).
--
-- Why: 001 granted SELECT on every table to platform_readonly and
-- platform_etl and whole-table SELECT to platform_app, so all three could
-- read users.password_hash, auth_tokens.token_hash and
-- dsp_connectors.credentials_encrypted; with its cross-tenant read policy the
-- ETL role read every tenant's DSP credentials without setting a tenant.
--
-- What this migration does (docs/SECURITY.md has the full role table):
--   * column-level SELECT for platform_app, platform_readonly and platform_etl:
--     every column but the secret ones; the ETL role keeps only the five
--     tables it loads or joins;
--   * the services that legitimately need a secret get it through a
--     SECURITY DEFINER function scoped to the current tenant, executable by a
--     dedicated role granted to that service's login only:
--       user_password_hash(email)        -> platform_auth (the login service)
--       dsp_connector_credentials(id)    -> platform_connector (DSP sync)
--     both owned by platform_secret_reader, a NOLOGIN role whose reads go
--     through the ordinary tenant policies;
--   * the ClickHouse dictionaries read dictionary_organizations and
--     dictionary_campaigns (all tenants, no secret) as platform_dictionary,
--     never the owner; the views run as platform_dictionary_reader, the only
--     role with a cross-tenant policy on those columns;
--   * CONNECT and TEMPORARY on the database are revoked from PUBLIC and
--     CONNECT granted to the service roles (TEMPORARY to platform_etl, whose
--     sync stages rows in a temporary table); functions created later by the
--     migration owner are not executable by PUBLIC (default privileges).
--
-- Idempotent: roles are created when missing, privileges are revoked and
-- granted again, functions and views are CREATE OR REPLACE.

DO $$
DECLARE
    v_role text;
BEGIN
    FOREACH v_role IN ARRAY ARRAY['platform_auth', 'platform_connector', 'platform_dictionary',
                                  'platform_secret_reader', 'platform_dictionary_reader'] LOOP
        BEGIN
            EXECUTE format('CREATE ROLE %I NOLOGIN', v_role);
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;  -- roles are cluster-wide: another database created it already
        END;
    END LOOP;
END
$$;

-- ------------------------------------------------------------ the database

DO $$
BEGIN
    -- The migration owner keeps its access when it is not the database owner.
    EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO %I',
                   current_database(), current_user);
    EXECUTE format('REVOKE CONNECT, TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO platform_app, platform_readonly,'
                   ' platform_etl, platform_auth, platform_connector, platform_dictionary',
                   current_database());
    EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO platform_etl', current_database());
END
$$;

ALTER DEFAULT PRIVILEGES REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
ALTER DEFAULT PRIVILEGES REVOKE USAGE ON TYPES FROM PUBLIC;
ALTER DEFAULT PRIVILEGES REVOKE ALL ON TABLES FROM PUBLIC;
ALTER DEFAULT PRIVILEGES REVOKE ALL ON SEQUENCES FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA public FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM PUBLIC;

GRANT USAGE ON SCHEMA public
    TO platform_auth, platform_connector, platform_dictionary, platform_secret_reader,
       platform_dictionary_reader;

-- ------------------------------------------- functions that hand out secrets

-- The login path: the bcrypt hash of a user of the current tenant, for the
-- auth service to verify in process (bcrypt stays off the database's CPU and
-- the clear-text password never reaches the server or its logs).
CREATE OR REPLACE FUNCTION public.user_password_hash(p_email text)
    RETURNS TABLE (user_id uuid, password_hash text, status text)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT u.id, u.password_hash::text, u.status::text
      FROM public.users u
     WHERE u.org_id = public.current_org_id()
       AND u.email = pg_catalog.lower(p_email)
$$;

-- The DSP sync path: a connector's credentials, still encrypted (the
-- connector service decrypts them with the key-encryption key it holds; see
-- platformdb.secrets), for a connector of the current tenant only.
CREATE OR REPLACE FUNCTION public.dsp_connector_credentials(p_connector_id uuid)
    RETURNS TABLE (credentials_encrypted bytea, credentials_key_id text)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.credentials_encrypted, c.credentials_key_id::text
      FROM public.dsp_connectors c
     WHERE c.org_id = public.current_org_id()
       AND c.id = p_connector_id
$$;

-- Token check for the login / API gateway path, which does not know the
-- tenant yet: given the SHA-256 of a presented token, return its tenant, user
-- and type if it is live. It never returns the hash itself.
CREATE OR REPLACE FUNCTION public.validate_auth_token(p_token_hash text)
    RETURNS TABLE (org_id uuid, user_id uuid, token_id uuid, token_type text,
                   expires_at timestamptz)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT t.org_id, t.user_id, t.id, t.token_type::text, t.expires_at
      FROM public.auth_tokens t
     WHERE t.token_hash = p_token_hash
       AND t.revoked_at IS NULL
       AND t.expires_at > pg_catalog.now()
$$;

ALTER FUNCTION public.user_password_hash(text) OWNER TO platform_secret_reader;
ALTER FUNCTION public.dsp_connector_credentials(uuid) OWNER TO platform_secret_reader;
ALTER FUNCTION public.validate_auth_token(text) OWNER TO platform_token_validator;

-- ------------------------------------------- what the ClickHouse dictionaries read

CREATE OR REPLACE VIEW public.dictionary_organizations AS
SELECT o.id, o.name, o.slug, o.status
  FROM public.organizations o;
COMMENT ON VIEW public.dictionary_organizations IS
    'Source of the ClickHouse organizations dictionary (all tenants, no secret); read by platform_dictionary.';

CREATE OR REPLACE VIEW public.dictionary_campaigns AS
SELECT c.org_id, c.id, c.name, c.status, c.currency
  FROM public.campaigns c;
COMMENT ON VIEW public.dictionary_campaigns IS
    'Source of the ClickHouse campaigns dictionary (all tenants, no secret); read by platform_dictionary.';

-- The views run with their owner's rights: a role that holds exactly these
-- columns and a read policy across tenants.
ALTER VIEW public.dictionary_organizations OWNER TO platform_dictionary_reader;
ALTER VIEW public.dictionary_campaigns OWNER TO platform_dictionary_reader;

DROP POLICY IF EXISTS organizations_dictionary_read ON public.organizations;
CREATE POLICY organizations_dictionary_read ON public.organizations
    FOR SELECT TO platform_dictionary_reader USING (true);
DROP POLICY IF EXISTS campaigns_dictionary_read ON public.campaigns;
CREATE POLICY campaigns_dictionary_read ON public.campaigns
    FOR SELECT TO platform_dictionary_reader USING (true);

-- ------------------------------------------------------------------ grants

REVOKE ALL ON ALL TABLES IN SCHEMA public
    FROM platform_app, platform_readonly, platform_etl, platform_auditor,
         platform_token_validator, platform_auth, platform_connector, platform_dictionary,
         platform_secret_reader, platform_dictionary_reader;

-- platform_app: reads and writes its tenant's rows; may write a secret
-- (register a password hash, store new encrypted credentials) but never read
-- one back.
GRANT SELECT, INSERT, UPDATE, DELETE
    ON public.organizations, public.user_roles, public.campaigns, public.campaign_metrics,
       public.etl_jobs, public.notifications
    TO platform_app;
GRANT SELECT (org_id, id, email, name, status, last_login_at, created_at, updated_at)
    ON public.users TO platform_app;
GRANT SELECT (org_id, id, user_id, token_type, expires_at, revoked_at, last_used_at, created_ip,
              user_agent, created_at)
    ON public.auth_tokens TO platform_app;
GRANT SELECT (org_id, id, name, dsp_type, status, external_account_id, credentials_key_id, config,
              last_sync_at, last_sync_status, last_error, created_at, updated_at)
    ON public.dsp_connectors TO platform_app;
GRANT INSERT, UPDATE, DELETE ON public.users, public.auth_tokens, public.dsp_connectors
    TO platform_app;
GRANT SELECT, INSERT ON public.audit_logs TO platform_app;
GRANT SELECT ON public.permissions, public.role_permissions, public.campaign_performance,
    public.user_permissions TO platform_app;

-- platform_readonly: reports of the current tenant, no secret column.
GRANT SELECT
    ON public.organizations, public.user_roles, public.permissions, public.role_permissions,
       public.campaigns, public.campaign_metrics, public.etl_jobs, public.notifications,
       public.audit_logs, public.campaign_performance, public.user_permissions
    TO platform_readonly;
GRANT SELECT (org_id, id, email, name, status, last_login_at, created_at, updated_at)
    ON public.users TO platform_readonly;
GRANT SELECT (org_id, id, user_id, token_type, expires_at, revoked_at, last_used_at, created_ip,
              user_agent, created_at)
    ON public.auth_tokens TO platform_readonly;
GRANT SELECT (org_id, id, name, dsp_type, status, external_account_id, credentials_key_id, config,
              last_sync_at, last_sync_status, last_error, created_at, updated_at)
    ON public.dsp_connectors TO platform_readonly;

-- platform_etl: loads campaign_metrics and records etl_jobs for every tenant
-- (policies *_etl_access), joins organizations, campaigns and connectors
-- (policies *_etl_read); connector credentials are not among the columns.
GRANT SELECT, INSERT, UPDATE, DELETE ON public.campaign_metrics, public.etl_jobs TO platform_etl;
GRANT SELECT ON public.organizations, public.campaigns TO platform_etl;
GRANT SELECT (org_id, id, name, dsp_type, status, external_account_id, credentials_key_id, config,
              last_sync_at, last_sync_status, last_error, created_at, updated_at)
    ON public.dsp_connectors TO platform_etl;

-- platform_auth: the login service. Reads users without their hash, checks a
-- password through user_password_hash(), stores a stronger hash after a
-- successful login (bcrypt cost raised), and issues and revokes tokens.
GRANT SELECT (org_id, id, email, name, status, last_login_at, created_at, updated_at)
    ON public.users TO platform_auth;
GRANT UPDATE (password_hash, last_login_at) ON public.users TO platform_auth;
GRANT SELECT (org_id, id, user_id, token_type, expires_at, revoked_at, last_used_at, created_ip,
              user_agent, created_at)
    ON public.auth_tokens TO platform_auth;
GRANT INSERT ON public.auth_tokens TO platform_auth;
GRANT UPDATE (revoked_at, last_used_at) ON public.auth_tokens TO platform_auth;

-- The definer roles: exactly what their functions and views read or write.
GRANT INSERT ON public.audit_logs TO platform_auditor;
GRANT SELECT (org_id, id, user_id, token_type, token_hash, expires_at, revoked_at)
    ON public.auth_tokens TO platform_token_validator;
GRANT SELECT (org_id, id, email, status, password_hash) ON public.users TO platform_secret_reader;
GRANT SELECT (org_id, id, credentials_encrypted, credentials_key_id)
    ON public.dsp_connectors TO platform_secret_reader;
GRANT SELECT (id, name, slug, status) ON public.organizations TO platform_dictionary_reader;
GRANT SELECT (org_id, id, name, status, currency) ON public.campaigns TO platform_dictionary_reader;

-- platform_dictionary: the two views and nothing else.
GRANT SELECT ON public.dictionary_organizations, public.dictionary_campaigns
    TO platform_dictionary;

-- Functions: the tenant helpers for every role that queries tenant tables,
-- each secret function for its one caller role.
REVOKE ALL ON FUNCTION public.user_password_hash(text), public.dsp_connector_credentials(uuid),
    public.validate_auth_token(text)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.current_org_id(), public.current_app_user_id(),
    public.tenant_txn_key(), public.set_tenant(uuid, uuid)
    TO platform_app, platform_readonly, platform_etl, platform_auditor, platform_token_validator,
       platform_auth, platform_connector, platform_dictionary, platform_secret_reader,
       platform_dictionary_reader;
GRANT EXECUTE ON FUNCTION public.validate_auth_token(text) TO platform_app, platform_auth;
GRANT EXECUTE ON FUNCTION public.user_password_hash(text) TO platform_auth;
GRANT EXECUTE ON FUNCTION public.dsp_connector_credentials(uuid) TO platform_connector;
