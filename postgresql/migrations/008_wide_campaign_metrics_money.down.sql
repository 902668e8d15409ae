-- Reverts 008_wide_campaign_metrics_money: spend and revenue back to
-- numeric(15,2) (a rewrite of every partition, which fails while a total of
-- 1e13 or more is stored: delete or shrink those rows first), the money CHECK
-- validated as in 001, and the view with its grants.
DROP VIEW IF EXISTS public.campaign_performance;
ALTER TABLE public.campaign_metrics DROP CONSTRAINT IF EXISTS chk_campaign_metrics_money;
ALTER TABLE public.campaign_metrics
    ALTER COLUMN spend TYPE numeric(15,2),
    ALTER COLUMN revenue TYPE numeric(15,2);
ALTER TABLE public.campaign_metrics ADD CONSTRAINT chk_campaign_metrics_money
    CHECK (spend >= 0 AND revenue >= 0);
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
REVOKE ALL ON public.campaign_performance FROM PUBLIC;
GRANT SELECT ON public.campaign_performance TO platform_app, platform_readonly;
