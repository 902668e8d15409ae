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
