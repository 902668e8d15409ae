-- 003_indexes: the indexes the platform's queries need beyond the primary
-- and unique keys of 001.
--
-- Every tenant table's primary key starts with org_id, so "org_id on every
-- table" is served by the key itself; the indexes below lead with org_id too
-- whenever the query is tenant-scoped (all application queries are, through
-- RLS). Every foreign key has an index on its referencing columns, so
-- deleting a user, connector or campaign never scans the referencing table.
--
-- Built on the partitioned parents, which PostgreSQL propagates to every
-- partition, present and future. On a fresh database this is instant; for a
-- populated production database add new indexes in their own
-- `-- platformdb: no-transaction` migration with CREATE INDEX CONCURRENTLY per
-- partition (docs/MIGRATIONS.md shows how). PostgreSQL has no CONCURRENTLY
-- for a partitioned parent, hence:
-- squawk-ignore-file require-concurrent-index-creation
CREATE INDEX IF NOT EXISTS idx_organizations_status ON public.organizations (status);

CREATE INDEX IF NOT EXISTS idx_role_permissions_permission_id
    ON public.role_permissions (permission_id);

CREATE INDEX IF NOT EXISTS idx_users_email ON public.users (email);
CREATE INDEX IF NOT EXISTS idx_users_org_id_status ON public.users (org_id, status);

CREATE INDEX IF NOT EXISTS idx_user_roles_org_id_role ON public.user_roles (org_id, role);
CREATE INDEX IF NOT EXISTS idx_user_roles_org_id_granted_by
    ON public.user_roles (org_id, granted_by);

CREATE INDEX IF NOT EXISTS idx_auth_tokens_token_hash ON public.auth_tokens (token_hash);
CREATE INDEX IF NOT EXISTS idx_auth_tokens_org_id_user_id ON public.auth_tokens (org_id, user_id);
CREATE INDEX IF NOT EXISTS idx_auth_tokens_expires_at ON public.auth_tokens (expires_at);

CREATE INDEX IF NOT EXISTS idx_dsp_connectors_org_id_dsp_type
    ON public.dsp_connectors (org_id, dsp_type);
CREATE INDEX IF NOT EXISTS idx_dsp_connectors_status ON public.dsp_connectors (status);

CREATE INDEX IF NOT EXISTS idx_campaigns_org_id_status ON public.campaigns (org_id, status);
CREATE INDEX IF NOT EXISTS idx_campaigns_org_id_dsp_connector_id
    ON public.campaigns (org_id, dsp_connector_id);
CREATE INDEX IF NOT EXISTS idx_campaigns_org_id_created_by
    ON public.campaigns (org_id, created_by);
CREATE INDEX IF NOT EXISTS idx_campaigns_org_id_created_at ON public.campaigns (org_id, created_at);
CREATE INDEX IF NOT EXISTS idx_campaigns_name_gin
    ON public.campaigns USING gin (to_tsvector('english', name));

CREATE INDEX IF NOT EXISTS idx_campaign_metrics_org_id_metric_date
    ON public.campaign_metrics (org_id, metric_date);

CREATE INDEX IF NOT EXISTS idx_etl_jobs_status_scheduled_at
    ON public.etl_jobs (status, scheduled_at) WHERE status IN ('pending', 'running');
CREATE INDEX IF NOT EXISTS idx_etl_jobs_org_id_created_at ON public.etl_jobs (org_id, created_at);
CREATE INDEX IF NOT EXISTS idx_etl_jobs_org_id_dsp_connector_id
    ON public.etl_jobs (org_id, dsp_connector_id);

CREATE INDEX IF NOT EXISTS idx_notifications_pending
    ON public.notifications (scheduled_at, priority) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS idx_notifications_org_id_user_id_created_at
    ON public.notifications (org_id, user_id, created_at);

CREATE INDEX IF NOT EXISTS idx_audit_logs_org_id_created_at
    ON public.audit_logs (org_id, created_at);
CREATE INDEX IF NOT EXISTS idx_audit_logs_org_id_resource
    ON public.audit_logs (org_id, resource_type, resource_id);
CREATE INDEX IF NOT EXISTS idx_audit_logs_org_id_user_id
    ON public.audit_logs (org_id, user_id) WHERE user_id IS NOT NULL;
