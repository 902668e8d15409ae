-- 008_wide_campaign_metrics_money: campaign_metrics.spend and .revenue become
-- numeric(38,2), wide enough for every daily total ClickHouse's Decimal(38,2)
-- rollups sync (issue 11.9; docs/CLICKHOUSE.md, "PostgreSQL migration").
--
-- Why: numeric(15,2) holds less than 1e13; `etl sync-daily` skipped every
-- campaign-day total at or above it and reported it.
--
-- Written for a live, partitioned table (check it with `platformdb migrate
-- plan`, which was run on PostgreSQL 15 and 18):
--   * numeric(15,2) -> numeric(38,2) keeps the scale and raises the precision:
--     binary compatible, so no partition is rewritten;
--   * but PostgreSQL re-checks every CHECK constraint on a column whose type
--     changes, scanning every partition under ACCESS EXCLUSIVE. The money CHECK
--     is therefore dropped first and added back NOT VALID (new and updated rows
--     are checked at once); 009 validates it under SHARE UPDATE EXCLUSIVE while
--     reads and writes go on;
--   * the view campaign_performance reads both columns, so it is dropped and
--     created again, with its grants, in this same transaction: no reader ever
--     sees it missing (they wait for the commit instead, as for any DDL).
-- The ACCESS EXCLUSIVE locks (the view, campaign_metrics and its partitions)
-- cover catalogue updates only, and the engine takes them under lock_timeout
-- with retries, so a busy table delays this migration, not the platform.
--
-- Idempotent: plain `psql -f` can run it again (IF EXISTS, a type change to
-- the type it already has, CREATE OR REPLACE VIEW, grants).

-- lint: allow ban-drop-view created again below in the same transaction: no client sees it gone
DROP VIEW IF EXISTS public.campaign_performance;

-- lint: allow ban-drop-constraint added back NOT VALID below: keeps the type change from scanning
ALTER TABLE public.campaign_metrics DROP CONSTRAINT IF EXISTS chk_campaign_metrics_money;

-- lint: allow changing-column-type numeric(15,2) -> numeric(38,2) is binary compatible: no rewrite
ALTER TABLE public.campaign_metrics
    ALTER COLUMN spend TYPE numeric(38,2),
    ALTER COLUMN revenue TYPE numeric(38,2);

ALTER TABLE public.campaign_metrics ADD CONSTRAINT chk_campaign_metrics_money
    CHECK (spend >= 0 AND revenue >= 0) NOT VALID;

-- As in 001: the caller's rights apply (security_invoker), so a tenant sees
-- only its own campaigns.
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

-- The view's grants of 005 (platform_app and platform_readonly read it).
REVOKE ALL ON public.campaign_performance FROM PUBLIC;
GRANT SELECT ON public.campaign_performance TO platform_app, platform_readonly;
