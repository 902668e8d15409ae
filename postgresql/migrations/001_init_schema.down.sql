-- Undo 001_init_schema: drop the twelve tables (with their partitions,
-- policies and triggers), the views, the helper functions and the partitions
-- schema, and give the public schema back its default privileges.
--
-- The roles are left in place on purpose: roles belong to the cluster, not to
-- this database, and other databases of the same server (platform_dev,
-- platform_test, ...) may still use them.
DROP VIEW IF EXISTS public.user_permissions;
DROP VIEW IF EXISTS public.campaign_performance;

DROP TABLE IF EXISTS public.audit_logs;
DROP TABLE IF EXISTS public.notifications;
DROP TABLE IF EXISTS public.etl_jobs;
DROP TABLE IF EXISTS public.campaign_metrics;
DROP TABLE IF EXISTS public.campaigns;
DROP TABLE IF EXISTS public.dsp_connectors;
DROP TABLE IF EXISTS public.auth_tokens;
DROP TABLE IF EXISTS public.user_roles;
DROP TABLE IF EXISTS public.users;
DROP TABLE IF EXISTS public.role_permissions;
DROP TABLE IF EXISTS public.permissions;
DROP TABLE IF EXISTS public.organizations;

DROP FUNCTION IF EXISTS public.validate_auth_token(text);
DROP FUNCTION IF EXISTS public.etl_jobs_transition();
DROP FUNCTION IF EXISTS public.audit_row_change();
DROP FUNCTION IF EXISTS public.set_updated_at();
DROP FUNCTION IF EXISTS public.drop_date_partitions_before(text, date, boolean);
DROP FUNCTION IF EXISTS public.ensure_date_partitions(text, date, integer);
DROP FUNCTION IF EXISTS public.set_tenant(uuid, uuid);
DROP FUNCTION IF EXISTS public.current_app_user_id();
DROP FUNCTION IF EXISTS public.current_org_id();

DROP SCHEMA IF EXISTS partitions;

DO $$
BEGIN
    IF to_regrole('platform_app') IS NOT NULL THEN
        REVOKE ALL ON SCHEMA public
            FROM platform_app, platform_readonly, platform_etl, platform_auditor,
                 platform_token_validator;
    END IF;
END
$$;
GRANT USAGE ON SCHEMA public TO PUBLIC;
