-- 001_init_schema: the platform's OLTP schema, the twelve tables of the spec.
--
-- Why it looks the way it does (docs/MULTI_TENANCY.md has the long form):
--   * every tenant table carries org_id, keys on (org_id, id) and references
--     other tenant tables through composite (org_id, x_id) foreign keys, so no
--     row can point into another tenant, and the layout is the one Citus
--     needs to distribute by org_id;
--   * tenant tables are HASH-partitioned by org_id; campaign_metrics and
--     audit_logs are RANGE-partitioned by month, each month HASH-partitioned
--     by org_id, with a DEFAULT partition; child tables live in the
--     `partitions` schema to keep `\dt` readable;
--   * row-level security is ENABLEd and FORCEd everywhere; the tenant is the
--     transaction-local setting app.current_org_id (see current_org_id()), so
--     with no tenant set a query sees nothing and writes nothing;
--   * roles: the migration owner, platform_app (subject to RLS),
--     platform_readonly, platform_etl, plus two NOLOGIN roles that own the
--     SECURITY DEFINER functions (audit writer, token validator).
--
-- Idempotent: plain `psql -f` can run it again on a migrated database.

DO $$
DECLARE
    v_role text;
BEGIN
    FOREACH v_role IN ARRAY ARRAY['platform_app', 'platform_readonly', 'platform_etl',
                                  'platform_auditor', 'platform_token_validator'] LOOP
        BEGIN
            EXECUTE format('CREATE ROLE %I NOLOGIN', v_role);
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;  -- roles are cluster-wide: another database created it already
        END;
    END LOOP;
END
$$;

CREATE SCHEMA IF NOT EXISTS partitions;
COMMENT ON SCHEMA partitions IS
    'Child partitions of the public tables; query the parents, never these.';
REVOKE ALL ON SCHEMA partitions FROM PUBLIC;

-- Tenant context: row-level security reads the tenant from two
-- transaction-local settings through these helpers, so a service in any
-- language can scope a transaction with set_config(..., true) or set_tenant().
-- A malformed setting raises (fails closed); an unset one yields NULL, which
-- matches no row. The two readers are plain SQL without SET clauses so the
-- planner can inline them into policies (pg_catalog is always searched first,
-- so they cannot be hijacked through search_path).
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

-- Date partition maintenance for campaign_metrics and audit_logs (RANGE by
-- month on the date column, each month HASH-subpartitioned by org_id, plus a
-- DEFAULT partition so that no row ever fails for lack of a partition).
-- ensure_date_partitions creates missing months, moving rows that had landed
-- in the default partition into their new month. drop_date_partitions_before
-- is the retention side. Both are idempotent and run as the owner (cron or
-- `platformdb partitions ensure` / `platformdb retention apply`).
CREATE OR REPLACE FUNCTION public.ensure_date_partitions(
    p_table text, p_from date, p_months integer DEFAULT 3)
    RETURNS integer
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, public
AS $$
DECLARE
    v_parent regclass;
    v_column name;
    v_type text;
    v_default text := p_table || '_default';
    v_month date;
    v_child text;
    v_low text;
    v_high text;
    v_created integer := 0;
    v_remainder integer;
BEGIN
    IF p_months IS NULL OR p_months < 1 OR p_months > 240 THEN
        RAISE EXCEPTION 'ensure_date_partitions: months must be between 1 and 240, got %', p_months
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_parent := to_regclass(format('public.%I', p_table));
    SELECT a.attname, format_type(a.atttypid, a.atttypmod)
      INTO v_column, v_type
      FROM pg_partitioned_table p
      JOIN pg_attribute a ON a.attrelid = p.partrelid AND a.attnum = p.partattrs[0]
     WHERE p.partrelid = v_parent AND p.partstrat = 'r';
    IF v_column IS NULL THEN
        RAISE EXCEPTION 'ensure_date_partitions: % is not a date-partitioned table', p_table
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR i IN 0 .. p_months - 1 LOOP
        v_month := (date_trunc('month', p_from) + make_interval(months => i))::date;
        v_child := format('%s_y%sm%s', p_table, to_char(v_month, 'YYYY'), to_char(v_month, 'MM'));
        CONTINUE WHEN to_regclass(format('partitions.%I', v_child)) IS NOT NULL;
        IF v_type = 'date' THEN
            v_low := v_month::text;
            v_high := (v_month + interval '1 month')::date::text;
        ELSE  -- timestamptz: months in UTC
            v_low := to_char(v_month, 'YYYY-MM-DD') || ' 00:00:00+00';
            v_high := to_char(v_month + interval '1 month', 'YYYY-MM-DD') || ' 00:00:00+00';
        END IF;
        -- Rows of this month that arrived before it existed sit in the default
        -- partition; PostgreSQL refuses the new partition until they move.
        IF to_regclass('pg_temp.platformdb_moved_rows') IS NOT NULL THEN
            DROP TABLE pg_temp.platformdb_moved_rows;
        END IF;
        EXECUTE format(
            'CREATE TEMP TABLE platformdb_moved_rows ON COMMIT DROP AS'
            ' SELECT * FROM partitions.%I WHERE %I >= %L AND %I < %L',
            v_default, v_column, v_low, v_column, v_high);
        EXECUTE format('DELETE FROM partitions.%I WHERE %I >= %L AND %I < %L',
            v_default, v_column, v_low, v_column, v_high);
        EXECUTE format(
            'CREATE TABLE partitions.%I PARTITION OF public.%I FOR VALUES FROM (%L) TO (%L)'
            ' PARTITION BY HASH (org_id)', v_child, p_table, v_low, v_high);
        FOR v_remainder IN 0 .. 3 LOOP
            EXECUTE format(
                'CREATE TABLE partitions.%I PARTITION OF partitions.%I'
                ' FOR VALUES WITH (MODULUS 4, REMAINDER %s)',
                v_child || '_h' || v_remainder, v_child, v_remainder);
        END LOOP;
        EXECUTE format('INSERT INTO partitions.%I SELECT * FROM pg_temp.platformdb_moved_rows',
            v_child);
        DROP TABLE pg_temp.platformdb_moved_rows;
        v_created := v_created + 1;
    END LOOP;
    RETURN v_created;
END
$$;

CREATE OR REPLACE FUNCTION public.drop_date_partitions_before(
    p_table text, p_before date, p_dry_run boolean DEFAULT false)
    RETURNS SETOF text
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, public
AS $$
DECLARE
    v_parent regclass;
    v_column name;
    v_child text;
    v_month date;
BEGIN
    v_parent := to_regclass(format('public.%I', p_table));
    SELECT a.attname INTO v_column
      FROM pg_partitioned_table p
      JOIN pg_attribute a ON a.attrelid = p.partrelid AND a.attnum = p.partattrs[0]
     WHERE p.partrelid = v_parent AND p.partstrat = 'r';
    IF v_column IS NULL THEN
        RAISE EXCEPTION 'drop_date_partitions_before: % is not a date-partitioned table', p_table
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR v_child IN
        SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = v_parent AND c.relname ~ '_y[0-9]{4}m[0-9]{2}$'
         ORDER BY c.relname
    LOOP
        v_month := to_date(right(v_child, 8), '"y"YYYY"m"MM');
        CONTINUE WHEN (v_month + interval '1 month')::date > p_before;
        IF NOT p_dry_run THEN
            EXECUTE format('DROP TABLE partitions.%I', v_child);
        END IF;
        RETURN NEXT v_child;
    END LOOP;
    IF NOT p_dry_run THEN
        EXECUTE format('DELETE FROM partitions.%I WHERE %I < %L',
            p_table || '_default', v_column, p_before);
    END IF;
END
$$;

-- Row triggers of the tenant tables: updated_at maintenance, the audit trail
-- and the etl_jobs status machine.
CREATE OR REPLACE FUNCTION public.set_updated_at() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog
AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

-- Every INSERT, UPDATE and DELETE on an audited table writes one audit_logs
-- row: who (app.current_user_id and the database role), what (operation,
-- table, row key) and what changed (old and new values of the changed
-- columns only), with secrets masked. It runs as platform_auditor, the only
-- role a policy lets append to audit_logs without a tenant, so services
-- cannot forge or skip audit rows and owner-run maintenance is audited too.
-- The trigger passes the parent table's name: on a partition, TG_TABLE_NAME
-- would name the partition.
CREATE OR REPLACE FUNCTION public.audit_row_change() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, public
AS $$
DECLARE
    v_secret text[] := ARRAY['password_hash', 'token_hash', 'credentials_encrypted'];
    v_old jsonb;
    v_new jsonb;
    v_changed text[];
    v_row jsonb;
    v_key text;
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        v_old := to_jsonb(OLD);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        v_new := to_jsonb(NEW);
    END IF;
    v_row := coalesce(v_new, v_old);
    IF TG_OP = 'UPDATE' THEN
        SELECT coalesce(array_agg(n.key ORDER BY n.key), '{}')
          INTO v_changed
          FROM jsonb_each(v_new) n
         WHERE n.value IS DISTINCT FROM v_old -> n.key AND n.key <> 'updated_at';
        IF cardinality(v_changed) = 0 THEN
            RETURN NULL;  -- a no-op update leaves no audit row
        END IF;
        SELECT jsonb_object_agg(key, v_old -> key) INTO v_old FROM unnest(v_changed) AS key;
        SELECT jsonb_object_agg(key, v_new -> key) INTO v_new FROM unnest(v_changed) AS key;
    END IF;
    FOREACH v_key IN ARRAY v_secret LOOP
        IF v_old ? v_key THEN v_old := jsonb_set(v_old, ARRAY[v_key], '"***"'); END IF;
        IF v_new ? v_key THEN v_new := jsonb_set(v_new, ARRAY[v_key], '"***"'); END IF;
    END LOOP;
    INSERT INTO public.audit_logs
        (org_id, user_id, action, resource_type, resource_id, old_values, new_values,
         changed_fields)
    VALUES (
        coalesce((v_row ->> 'org_id')::uuid, (v_row ->> 'id')::uuid),
        current_app_user_id(),
        TG_OP,
        coalesce(TG_ARGV[0], TG_TABLE_NAME),
        coalesce(v_row ->> 'id', concat_ws(':', v_row ->> 'user_id', v_row ->> 'role')),
        v_old,
        v_new,
        v_changed);
    RETURN NULL;
END
$$;

-- etl_jobs moves pending -> running -> succeeded | failed | cancelled, a
-- failed (or stalled running) job may go back to pending for a retry while
-- attempts remain, and succeeded / cancelled are final. The trigger keeps
-- attempts and the timestamps consistent with the transition.
CREATE OR REPLACE FUNCTION public.etl_jobs_transition() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog
AS $$
BEGIN
    IF NEW.status IS NOT DISTINCT FROM OLD.status THEN
        RETURN NEW;
    END IF;
    IF (OLD.status, NEW.status) NOT IN (
            ('pending', 'running'), ('pending', 'cancelled'),
            ('running', 'succeeded'), ('running', 'failed'), ('running', 'cancelled'),
            ('running', 'pending'), ('failed', 'pending')) THEN
        RAISE EXCEPTION 'etl_jobs %: invalid status transition % -> %', OLD.id, OLD.status, NEW.status
            USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.status = 'pending' AND OLD.attempts >= NEW.max_attempts THEN
        RAISE EXCEPTION 'etl_jobs %: no attempts left (% of %)', OLD.id, OLD.attempts, NEW.max_attempts
            USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.status = 'running' THEN
        NEW.attempts := OLD.attempts + 1;
        NEW.started_at := now();
        NEW.finished_at := NULL;
        NEW.error := NULL;
    ELSIF NEW.status IN ('succeeded', 'failed', 'cancelled') THEN
        NEW.finished_at := now();
    ELSE
        NEW.started_at := NULL;
        NEW.finished_at := NULL;
    END IF;
    RETURN NEW;
END
$$;

-- ------------------------------------------------------------------ tables

CREATE TABLE IF NOT EXISTS public.organizations (
    id          uuid         NOT NULL DEFAULT gen_random_uuid(),
    name        varchar(255) NOT NULL,
    slug        varchar(100) NOT NULL,
    status      varchar(50)  NOT NULL DEFAULT 'active',
    settings    jsonb        NOT NULL DEFAULT '{}',
    created_at  timestamptz  NOT NULL DEFAULT now(),
    updated_at  timestamptz  NOT NULL DEFAULT now(),
    CONSTRAINT organizations_pkey PRIMARY KEY (id),
    CONSTRAINT organizations_slug_key UNIQUE (slug),
    CONSTRAINT chk_organizations_slug CHECK (slug ~ '^[a-z0-9][a-z0-9-]{0,99}$'),
    CONSTRAINT chk_organizations_status CHECK (status IN ('active', 'suspended', 'archived')),
    CONSTRAINT chk_organizations_name CHECK (btrim(name) <> ''),
    CONSTRAINT chk_organizations_settings CHECK (jsonb_typeof(settings) = 'object')
);
COMMENT ON TABLE public.organizations IS 'Tenant organizations; id is the org_id of every tenant row.';

CREATE TABLE IF NOT EXISTS public.permissions (
    id           uuid         NOT NULL DEFAULT gen_random_uuid(),
    code         varchar(100) NOT NULL,
    resource     varchar(50)  NOT NULL,
    action       varchar(50)  NOT NULL,
    description  text         NOT NULL DEFAULT '',
    created_at   timestamptz  NOT NULL DEFAULT now(),
    CONSTRAINT permissions_pkey PRIMARY KEY (id),
    CONSTRAINT permissions_code_key UNIQUE (code),
    CONSTRAINT chk_permissions_code CHECK (code = resource || ':' || action),
    CONSTRAINT chk_permissions_resource CHECK (resource ~ '^[a-z][a-z_]*$'),
    CONSTRAINT chk_permissions_action CHECK (action ~ '^[a-z][a-z_]*$')
);
COMMENT ON TABLE public.permissions IS 'Permission catalogue (global reference data, see 002).';

CREATE TABLE IF NOT EXISTS public.role_permissions (
    role           varchar(50) NOT NULL,
    permission_id  uuid        NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT role_permissions_pkey PRIMARY KEY (role, permission_id),
    CONSTRAINT fk_role_permissions_permission FOREIGN KEY (permission_id)
        REFERENCES public.permissions (id) ON DELETE CASCADE,
    CONSTRAINT chk_role_permissions_role
        CHECK (role IN ('owner', 'admin', 'campaign_manager', 'analyst', 'viewer'))
);
COMMENT ON TABLE public.role_permissions IS 'System role -> permission mapping (global reference data).';

CREATE TABLE IF NOT EXISTS public.users (
    org_id         uuid         NOT NULL,
    id             uuid         NOT NULL DEFAULT gen_random_uuid(),
    email          varchar(255) NOT NULL,
    password_hash  varchar(255) NOT NULL,
    name           varchar(255) NOT NULL,
    status         varchar(50)  NOT NULL DEFAULT 'active',
    last_login_at  timestamptz,
    created_at     timestamptz  NOT NULL DEFAULT now(),
    updated_at     timestamptz  NOT NULL DEFAULT now(),
    CONSTRAINT users_pkey PRIMARY KEY (org_id, id),
    CONSTRAINT users_org_id_email_key UNIQUE (org_id, email),
    CONSTRAINT fk_users_org FOREIGN KEY (org_id)
        REFERENCES public.organizations (id) ON DELETE CASCADE,
    CONSTRAINT chk_users_email CHECK (email = lower(email) AND email ~ '^[^@[:space:]]+@[^@[:space:]]+$'),
    CONSTRAINT chk_users_password_hash
        CHECK (password_hash ~ '^\$2[aby]\$[0-9]{2}\$[./A-Za-z0-9]{53}$'),
    CONSTRAINT chk_users_status CHECK (status IN ('invited', 'active', 'suspended', 'deactivated'))
) PARTITION BY HASH (org_id);
COMMENT ON COLUMN public.users.password_hash IS 'bcrypt only (CHECK); never a clear-text password.';

CREATE TABLE IF NOT EXISTS public.user_roles (
    org_id      uuid        NOT NULL,
    user_id     uuid        NOT NULL,
    role        varchar(50) NOT NULL,
    granted_by  uuid,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT user_roles_pkey PRIMARY KEY (org_id, user_id, role),
    CONSTRAINT fk_user_roles_user FOREIGN KEY (org_id, user_id)
        REFERENCES public.users (org_id, id) ON DELETE CASCADE,
    CONSTRAINT fk_user_roles_granted_by FOREIGN KEY (org_id, granted_by)
        REFERENCES public.users (org_id, id) ON DELETE SET NULL (granted_by),
    CONSTRAINT chk_user_roles_role
        CHECK (role IN ('owner', 'admin', 'campaign_manager', 'analyst', 'viewer'))
) PARTITION BY HASH (org_id);

CREATE TABLE IF NOT EXISTS public.auth_tokens (
    org_id        uuid        NOT NULL,
    id            uuid        NOT NULL DEFAULT gen_random_uuid(),
    user_id       uuid        NOT NULL,
    token_type    varchar(30) NOT NULL,
    token_hash    char(64)    NOT NULL,
    expires_at    timestamptz NOT NULL,
    revoked_at    timestamptz,
    last_used_at  timestamptz,
    created_ip    inet,
    user_agent    text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT auth_tokens_pkey PRIMARY KEY (org_id, id),
    CONSTRAINT auth_tokens_org_id_token_hash_key UNIQUE (org_id, token_hash),
    CONSTRAINT fk_auth_tokens_user FOREIGN KEY (org_id, user_id)
        REFERENCES public.users (org_id, id) ON DELETE CASCADE,
    CONSTRAINT chk_auth_tokens_token_type
        CHECK (token_type IN ('access', 'refresh', 'api_key', 'password_reset', 'email_verification')),
    CONSTRAINT chk_auth_tokens_token_hash CHECK (token_hash ~ '^[0-9a-f]{64}$'),
    CONSTRAINT chk_auth_tokens_expiry CHECK (expires_at > created_at),
    CONSTRAINT chk_auth_tokens_revoked CHECK (revoked_at IS NULL OR revoked_at >= created_at)
) PARTITION BY HASH (org_id);
COMMENT ON COLUMN public.auth_tokens.token_hash IS
    'hex SHA-256 of the token; the token itself is never stored.';

CREATE TABLE IF NOT EXISTS public.dsp_connectors (
    org_id                 uuid         NOT NULL,
    id                     uuid         NOT NULL DEFAULT gen_random_uuid(),
    name                   varchar(255) NOT NULL,
    dsp_type               varchar(50)  NOT NULL,
    status                 varchar(50)  NOT NULL DEFAULT 'pending',
    external_account_id    varchar(255),
    credentials_encrypted  bytea,
    credentials_key_id     varchar(100),
    config                 jsonb        NOT NULL DEFAULT '{}',
    last_sync_at           timestamptz,
    last_sync_status       varchar(20),
    last_error             text,
    created_at             timestamptz  NOT NULL DEFAULT now(),
    updated_at             timestamptz  NOT NULL DEFAULT now(),
    CONSTRAINT dsp_connectors_pkey PRIMARY KEY (org_id, id),
    CONSTRAINT dsp_connectors_org_id_name_key UNIQUE (org_id, name),
    CONSTRAINT fk_dsp_connectors_org FOREIGN KEY (org_id)
        REFERENCES public.organizations (id) ON DELETE CASCADE,
    CONSTRAINT chk_dsp_connectors_dsp_type CHECK (dsp_type IN
        ('dv360', 'the_trade_desk', 'amazon_dsp', 'xandr', 'google_ads', 'meta_ads', 'stackadapt')),
    CONSTRAINT chk_dsp_connectors_status CHECK (status IN ('pending', 'active', 'error', 'disabled')),
    CONSTRAINT chk_dsp_connectors_last_sync_status
        CHECK (last_sync_status IN ('succeeded', 'partial', 'failed')),
    CONSTRAINT chk_dsp_connectors_credentials
        CHECK (credentials_encrypted IS NULL
               OR (octet_length(credentials_encrypted) >= 28 AND credentials_key_id IS NOT NULL))
) PARTITION BY HASH (org_id);
COMMENT ON COLUMN public.dsp_connectors.credentials_encrypted IS
    'Ciphertext (e.g. AES-GCM nonce || ciphertext || tag) produced by the application;'
    ' credentials_key_id names the key version. The database never sees the clear text.';

CREATE TABLE IF NOT EXISTS public.campaigns (
    org_id            uuid          NOT NULL,
    id                uuid          NOT NULL DEFAULT gen_random_uuid(),
    dsp_connector_id  uuid,
    external_id       varchar(255),
    name              varchar(255)  NOT NULL,
    objective         varchar(50),
    status            varchar(50)   NOT NULL DEFAULT 'draft',
    budget            numeric(15,2),
    budget_type       varchar(20)   NOT NULL DEFAULT 'lifetime',
    currency          char(3)       NOT NULL DEFAULT 'USD',
    start_date        date,
    end_date          date,
    settings          jsonb         NOT NULL DEFAULT '{}',
    created_by        uuid,
    created_at        timestamptz   NOT NULL DEFAULT now(),
    updated_at        timestamptz   NOT NULL DEFAULT now(),
    CONSTRAINT campaigns_pkey PRIMARY KEY (org_id, id),
    CONSTRAINT campaigns_org_id_dsp_connector_id_external_id_key
        UNIQUE (org_id, dsp_connector_id, external_id),
    CONSTRAINT fk_campaigns_org FOREIGN KEY (org_id)
        REFERENCES public.organizations (id) ON DELETE CASCADE,
    CONSTRAINT fk_campaigns_dsp_connector FOREIGN KEY (org_id, dsp_connector_id)
        REFERENCES public.dsp_connectors (org_id, id) ON DELETE SET NULL (dsp_connector_id),
    CONSTRAINT fk_campaigns_created_by FOREIGN KEY (org_id, created_by)
        REFERENCES public.users (org_id, id) ON DELETE SET NULL (created_by),
    CONSTRAINT chk_campaigns_status CHECK (status IN
        ('draft', 'pending_approval', 'active', 'paused', 'completed', 'archived')),
    CONSTRAINT chk_campaigns_budget CHECK (budget >= 0),
    CONSTRAINT chk_campaigns_budget_type CHECK (budget_type IN ('daily', 'lifetime')),
    CONSTRAINT chk_campaigns_currency CHECK (currency ~ '^[A-Z]{3}$'),
    CONSTRAINT chk_campaigns_dates CHECK (end_date >= start_date),
    CONSTRAINT chk_campaigns_external_id CHECK (external_id IS NULL OR dsp_connector_id IS NOT NULL)
) PARTITION BY HASH (org_id);

CREATE TABLE IF NOT EXISTS public.campaign_metrics (
    org_id       uuid          NOT NULL,
    campaign_id  uuid          NOT NULL,
    metric_date  date          NOT NULL,
    dsp_type     varchar(50)   NOT NULL,
    impressions  bigint        NOT NULL DEFAULT 0,
    clicks       bigint        NOT NULL DEFAULT 0,
    conversions  bigint        NOT NULL DEFAULT 0,
    spend        numeric(15,2) NOT NULL DEFAULT 0,
    revenue      numeric(15,2) NOT NULL DEFAULT 0,
    created_at   timestamptz   NOT NULL DEFAULT now(),
    updated_at   timestamptz   NOT NULL DEFAULT now(),
    CONSTRAINT campaign_metrics_pkey PRIMARY KEY (org_id, campaign_id, metric_date, dsp_type),
    CONSTRAINT fk_campaign_metrics_campaign FOREIGN KEY (org_id, campaign_id)
        REFERENCES public.campaigns (org_id, id) ON DELETE CASCADE,
    CONSTRAINT chk_campaign_metrics_counts
        CHECK (impressions >= 0 AND clicks >= 0 AND conversions >= 0),
    CONSTRAINT chk_campaign_metrics_money CHECK (spend >= 0 AND revenue >= 0)
) PARTITION BY RANGE (metric_date);
COMMENT ON TABLE public.campaign_metrics IS
    'Daily totals per campaign and DSP, synced from ClickHouse campaign_metrics_daily.';

CREATE TABLE IF NOT EXISTS public.etl_jobs (
    org_id            uuid        NOT NULL,
    id                uuid        NOT NULL DEFAULT gen_random_uuid(),
    job_type          varchar(50) NOT NULL,
    dsp_connector_id  uuid,
    status            varchar(20) NOT NULL DEFAULT 'pending',
    params            jsonb       NOT NULL DEFAULT '{}',
    -- lint: allow prefer-bigint-over-int a retry counter bounded by max_attempts
    attempts          integer     NOT NULL DEFAULT 0,
    -- lint: allow prefer-bigint-over-int a small configured limit
    max_attempts      integer     NOT NULL DEFAULT 3,
    scheduled_at      timestamptz NOT NULL DEFAULT now(),
    started_at        timestamptz,
    finished_at       timestamptz,
    rows_processed    bigint      NOT NULL DEFAULT 0,
    rows_failed       bigint      NOT NULL DEFAULT 0,
    result            jsonb,
    error             text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT etl_jobs_pkey PRIMARY KEY (org_id, id),
    CONSTRAINT fk_etl_jobs_org FOREIGN KEY (org_id)
        REFERENCES public.organizations (id) ON DELETE CASCADE,
    CONSTRAINT fk_etl_jobs_dsp_connector FOREIGN KEY (org_id, dsp_connector_id)
        REFERENCES public.dsp_connectors (org_id, id) ON DELETE SET NULL (dsp_connector_id),
    CONSTRAINT chk_etl_jobs_job_type CHECK (job_type ~ '^[a-z][a-z0-9_]*$'),
    CONSTRAINT chk_etl_jobs_status
        CHECK (status IN ('pending', 'running', 'succeeded', 'failed', 'cancelled')),
    CONSTRAINT chk_etl_jobs_attempts CHECK (attempts >= 0 AND max_attempts >= 1),
    CONSTRAINT chk_etl_jobs_rows CHECK (rows_processed >= 0 AND rows_failed >= 0),
    CONSTRAINT chk_etl_jobs_times CHECK (finished_at >= started_at)
) PARTITION BY HASH (org_id);

CREATE TABLE IF NOT EXISTS public.notifications (
    org_id        uuid         NOT NULL,
    id            uuid         NOT NULL DEFAULT gen_random_uuid(),
    user_id       uuid,
    channel       varchar(20)  NOT NULL,
    template      varchar(100) NOT NULL DEFAULT 'generic',
    payload       jsonb        NOT NULL DEFAULT '{}',
    status        varchar(20)  NOT NULL DEFAULT 'pending',
    -- lint: allow prefer-bigint-over-smallint a priority level, not an id
    priority      smallint     NOT NULL DEFAULT 0,
    -- lint: allow prefer-bigint-over-int a delivery retry counter
    attempts      integer      NOT NULL DEFAULT 0,
    scheduled_at  timestamptz  NOT NULL DEFAULT now(),
    sent_at       timestamptz,
    read_at       timestamptz,
    error         text,
    created_at    timestamptz  NOT NULL DEFAULT now(),
    updated_at    timestamptz  NOT NULL DEFAULT now(),
    CONSTRAINT notifications_pkey PRIMARY KEY (org_id, id),
    CONSTRAINT fk_notifications_org FOREIGN KEY (org_id)
        REFERENCES public.organizations (id) ON DELETE CASCADE,
    CONSTRAINT fk_notifications_user FOREIGN KEY (org_id, user_id)
        REFERENCES public.users (org_id, id) ON DELETE CASCADE,
    CONSTRAINT chk_notifications_channel
        CHECK (channel IN ('email', 'in_app', 'slack', 'webhook', 'sms')),
    CONSTRAINT chk_notifications_status
        CHECK (status IN ('pending', 'sending', 'sent', 'failed', 'cancelled')),
    CONSTRAINT chk_notifications_payload CHECK (jsonb_typeof(payload) = 'object'),
    CONSTRAINT chk_notifications_attempts CHECK (attempts >= 0),
    CONSTRAINT chk_notifications_sent CHECK ((status = 'sent') = (sent_at IS NOT NULL))
) PARTITION BY HASH (org_id);

-- Append-only history. No foreign keys on purpose: the trail outlives the
-- rows (and organizations) it describes.
CREATE TABLE IF NOT EXISTS public.audit_logs (
    org_id          uuid         NOT NULL,
    id              uuid         NOT NULL DEFAULT gen_random_uuid(),
    created_at      timestamptz  NOT NULL DEFAULT now(),
    user_id         uuid,
    action          varchar(20)  NOT NULL,
    resource_type   varchar(100) NOT NULL,
    resource_id     varchar(255),
    old_values      jsonb,
    new_values      jsonb,
    changed_fields  text[],
    db_user         name         NOT NULL DEFAULT session_user,
    client_addr     inet                  DEFAULT inet_client_addr(),
    txid            bigint       NOT NULL DEFAULT txid_current(),
    CONSTRAINT audit_logs_pkey PRIMARY KEY (org_id, id, created_at),
    CONSTRAINT chk_audit_logs_action CHECK (action ~ '^[A-Z][A-Z_]*$'),
    CONSTRAINT chk_audit_logs_resource_type CHECK (resource_type ~ '^[a-z][a-z0-9_]*$')
) PARTITION BY RANGE (created_at);

-- ---------------------------------------------------------------- partitions

DO $$
DECLARE
    v_table text;
BEGIN
    FOREACH v_table IN ARRAY ARRAY['users', 'user_roles', 'auth_tokens', 'dsp_connectors',
                                   'campaigns', 'etl_jobs', 'notifications'] LOOP
        FOR v_remainder IN 0 .. 7 LOOP
            EXECUTE format(
                'CREATE TABLE IF NOT EXISTS partitions.%I PARTITION OF public.%I'
                ' FOR VALUES WITH (MODULUS 8, REMAINDER %s)',
                v_table || '_p' || v_remainder, v_table, v_remainder);
        END LOOP;
    END LOOP;
END
$$;

CREATE TABLE IF NOT EXISTS partitions.campaign_metrics_default
    PARTITION OF public.campaign_metrics DEFAULT;
CREATE TABLE IF NOT EXISTS partitions.audit_logs_default
    PARTITION OF public.audit_logs DEFAULT;

-- The previous month, this month and three ahead; `platformdb partitions
-- ensure` (cron) keeps creating them, and rows of a month that does not exist
-- yet wait in the default partition.
SELECT public.ensure_date_partitions('campaign_metrics',
    (date_trunc('month', current_date) - interval '1 month')::date, 5);
SELECT public.ensure_date_partitions('audit_logs',
    (date_trunc('month', current_date) - interval '1 month')::date, 5);

-- Token check for the login / API gateway path, which does not know the
-- tenant yet: given the SHA-256 of a presented token, return its tenant, user
-- and type if it is live. Runs as platform_token_validator, whose only
-- policy is to read auth_tokens; the caller then scopes its transaction.
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

-- Daily campaign performance with the ratios reports need. security_invoker
-- makes the view run with the caller's rights, so row-level security of the
-- underlying tables applies: a tenant sees only its own campaigns.
CREATE OR REPLACE VIEW public.campaign_performance
    WITH (security_invoker = true) AS
SELECT m.org_id,
       m.campaign_id,
       c.name AS campaign_name,
       c.status AS campaign_status,
       c.currency,
       m.metric_date,
       m.dsp_type,
       m.impressions,
       m.clicks,
       m.conversions,
       m.spend,
       m.revenue,
       round(m.clicks::numeric / nullif(m.impressions, 0), 6) AS ctr,
       round(m.spend / nullif(m.clicks, 0), 4) AS cpc,
       round(m.spend * 1000 / nullif(m.impressions, 0), 4) AS cpm,
       round(m.revenue / nullif(m.spend, 0), 4) AS roas
  FROM public.campaign_metrics m
  JOIN public.campaigns c ON c.org_id = m.org_id AND c.id = m.campaign_id;

-- Effective permissions of each user (role assignments through the role
-- catalogue), for authorization checks: `SELECT 1 FROM user_permissions WHERE
-- user_id = $1 AND permission = 'campaigns:update'`. Runs with the caller's
-- rights, so it is tenant-scoped like user_roles.
CREATE OR REPLACE VIEW public.user_permissions
    WITH (security_invoker = true) AS
SELECT ur.org_id,
       ur.user_id,
       ur.role,
       p.code AS permission
  FROM public.user_roles ur
  JOIN public.role_permissions rp ON rp.role = ur.role
  JOIN public.permissions p ON p.id = rp.permission_id;

-- --------------------------------------------------------- triggers and RLS

DO $$
DECLARE
    v_table text;
BEGIN
    FOREACH v_table IN ARRAY ARRAY['organizations', 'users', 'dsp_connectors', 'campaigns',
                                   'campaign_metrics', 'etl_jobs', 'notifications'] LOOP
        EXECUTE format(
            'CREATE OR REPLACE TRIGGER %I BEFORE UPDATE ON public.%I'
            ' FOR EACH ROW EXECUTE FUNCTION public.set_updated_at()',
            'trg_' || v_table || '_updated_at', v_table);
    END LOOP;
    -- campaign_metrics (synced in bulk from ClickHouse, each sync is an
    -- etl_jobs row) and audit_logs itself are not audited.
    FOREACH v_table IN ARRAY ARRAY['organizations', 'users', 'user_roles', 'auth_tokens',
                                   'dsp_connectors', 'campaigns', 'etl_jobs',
                                   'notifications'] LOOP
        EXECUTE format(
            'CREATE OR REPLACE TRIGGER %I AFTER INSERT OR UPDATE OR DELETE ON public.%I'
            ' FOR EACH ROW EXECUTE FUNCTION public.audit_row_change(%L)',
            'trg_' || v_table || '_audit', v_table, v_table);
    END LOOP;
    -- The ETL role works across tenants on the tables it loads, and reads the
    -- ones it joins; nothing else.
    FOREACH v_table IN ARRAY ARRAY['campaign_metrics', 'etl_jobs'] LOOP
        EXECUTE format('DROP POLICY IF EXISTS %I ON public.%I', v_table || '_etl_access', v_table);
        EXECUTE format(
            'CREATE POLICY %I ON public.%I TO platform_etl USING (true) WITH CHECK (true)',
            v_table || '_etl_access', v_table);
    END LOOP;
    FOREACH v_table IN ARRAY ARRAY['organizations', 'dsp_connectors', 'campaigns'] LOOP
        EXECUTE format('DROP POLICY IF EXISTS %I ON public.%I', v_table || '_etl_read', v_table);
        EXECUTE format(
            'CREATE POLICY %I ON public.%I FOR SELECT TO platform_etl USING (true)',
            v_table || '_etl_read', v_table);
    END LOOP;
END
$$;

-- Every tenant table: RLS on and forced (the owner too), one policy that
-- admits exactly the rows of the transaction's tenant.
ALTER TABLE public.organizations ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.organizations FORCE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS organizations_tenant_isolation ON public.organizations;
CREATE POLICY organizations_tenant_isolation ON public.organizations
    USING (id = public.current_org_id()) WITH CHECK (id = public.current_org_id());
ALTER TABLE public.users ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.users FORCE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS users_tenant_isolation ON public.users;
CREATE POLICY users_tenant_isolation ON public.users
    USING (org_id = public.current_org_id()) WITH CHECK (org_id = public.current_org_id());
ALTER TABLE public.user_roles ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.user_roles FORCE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS user_roles_tenant_isolation ON public.user_roles;
CREATE POLICY user_roles_tenant_isolation ON public.user_roles
    USING (org_id = public.current_org_id()) WITH CHECK (org_id = public.current_org_id());
ALTER TABLE public.auth_tokens ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.auth_tokens FORCE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS auth_tokens_tenant_isolation ON public.auth_tokens;
CREATE POLICY auth_tokens_tenant_isolation ON public.auth_tokens
    USING (org_id = public.current_org_id()) WITH CHECK (org_id = public.current_org_id());
ALTER TABLE public.dsp_connectors ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.dsp_connectors FORCE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS dsp_connectors_tenant_isolation ON public.dsp_connectors;
CREATE POLICY dsp_connectors_tenant_isolation ON public.dsp_connectors
    USING (org_id = public.current_org_id()) WITH CHECK (org_id = public.current_org_id());
ALTER TABLE public.campaigns ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.campaigns FORCE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS campaigns_tenant_isolation ON public.campaigns;
CREATE POLICY campaigns_tenant_isolation ON public.campaigns
    USING (org_id = public.current_org_id()) WITH CHECK (org_id = public.current_org_id());
ALTER TABLE public.campaign_metrics ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.campaign_metrics FORCE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS campaign_metrics_tenant_isolation ON public.campaign_metrics;
CREATE POLICY campaign_metrics_tenant_isolation ON public.campaign_metrics
    USING (org_id = public.current_org_id()) WITH CHECK (org_id = public.current_org_id());
ALTER TABLE public.etl_jobs ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.etl_jobs FORCE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS etl_jobs_tenant_isolation ON public.etl_jobs;
CREATE POLICY etl_jobs_tenant_isolation ON public.etl_jobs
    USING (org_id = public.current_org_id()) WITH CHECK (org_id = public.current_org_id());
ALTER TABLE public.notifications ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.notifications FORCE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS notifications_tenant_isolation ON public.notifications;
CREATE POLICY notifications_tenant_isolation ON public.notifications
    USING (org_id = public.current_org_id()) WITH CHECK (org_id = public.current_org_id());
ALTER TABLE public.audit_logs ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.audit_logs FORCE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS audit_logs_tenant_isolation ON public.audit_logs;
CREATE POLICY audit_logs_tenant_isolation ON public.audit_logs
    USING (org_id = public.current_org_id()) WITH CHECK (org_id = public.current_org_id());

CREATE OR REPLACE TRIGGER trg_etl_jobs_transition BEFORE UPDATE ON public.etl_jobs
    FOR EACH ROW EXECUTE FUNCTION public.etl_jobs_transition();

DROP POLICY IF EXISTS audit_logs_audit_writer ON public.audit_logs;
CREATE POLICY audit_logs_audit_writer ON public.audit_logs
    FOR INSERT TO platform_auditor WITH CHECK (true);
DROP POLICY IF EXISTS auth_tokens_token_validation ON public.auth_tokens;
CREATE POLICY auth_tokens_token_validation ON public.auth_tokens
    FOR SELECT TO platform_token_validator USING (true);

-- ------------------------------------------------------------------- grants

REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public
    TO platform_app, platform_readonly, platform_etl, platform_auditor, platform_token_validator;

REVOKE ALL ON FUNCTION public.current_org_id(), public.current_app_user_id(),
    public.set_tenant(uuid, uuid), public.ensure_date_partitions(text, date, integer),
    public.drop_date_partitions_before(text, date, boolean), public.set_updated_at(),
    public.audit_row_change(), public.etl_jobs_transition(), public.validate_auth_token(text)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.current_org_id(), public.current_app_user_id(),
    public.set_tenant(uuid, uuid)
    TO platform_app, platform_readonly, platform_etl, platform_auditor, platform_token_validator;
GRANT EXECUTE ON FUNCTION public.validate_auth_token(text) TO platform_app;

GRANT SELECT, INSERT, UPDATE, DELETE ON public.organizations, public.users, public.user_roles,
    public.auth_tokens, public.dsp_connectors, public.campaigns, public.campaign_metrics,
    public.etl_jobs, public.notifications TO platform_app;
GRANT SELECT, INSERT ON public.audit_logs TO platform_app;  -- append-only
GRANT SELECT ON public.permissions, public.role_permissions, public.campaign_performance,
    public.user_permissions TO platform_app;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO platform_readonly, platform_etl;
GRANT INSERT, UPDATE, DELETE ON public.campaign_metrics, public.etl_jobs TO platform_etl;
GRANT INSERT ON public.audit_logs TO platform_auditor;
GRANT SELECT ON public.auth_tokens TO platform_token_validator;

-- The two SECURITY DEFINER functions run as roles that hold exactly the
-- privileges and policies they need, not as the owner.
ALTER FUNCTION public.audit_row_change() OWNER TO platform_auditor;
ALTER FUNCTION public.validate_auth_token(text) OWNER TO platform_token_validator;
