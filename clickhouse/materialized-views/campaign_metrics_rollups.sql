-- raw -> hourly -> daily. Each view sees only the block being inserted and
-- writes its partial sums; SummingMergeTree folds them together in the
-- background, and readers sum() anyway. Chaining daily off hourly (not raw)
-- keeps the daily view's work proportional to the hourly rows.
CREATE MATERIALIZED VIEW IF NOT EXISTS campaign_metrics_hourly_mv TO campaign_metrics_hourly AS
SELECT
    toStartOfHour(timestamp) AS hour,
    org_id,
    campaign_id,
    dsp_type,
    sum(impressions) AS impressions,
    sum(clicks) AS clicks,
    sum(conversions) AS conversions,
    sum(spend) AS spend,
    sum(revenue) AS revenue,
    count() AS raw_rows
FROM campaign_metrics_raw
GROUP BY hour, org_id, campaign_id, dsp_type;

CREATE MATERIALIZED VIEW IF NOT EXISTS campaign_metrics_daily_mv TO campaign_metrics_daily AS
SELECT
    toDate(hour) AS date,
    org_id,
    campaign_id,
    dsp_type,
    sum(impressions) AS impressions,
    sum(clicks) AS clicks,
    sum(conversions) AS conversions,
    sum(spend) AS spend,
    sum(revenue) AS revenue,
    sum(raw_rows) AS raw_rows
FROM campaign_metrics_hourly
GROUP BY date, org_id, campaign_id, dsp_type;
