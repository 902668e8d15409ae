-- Cluster edition of 001_campaign_metrics.sql (which stays as applied: its
-- checksum is of the file text). Rendered for one node this template gives
-- exactly the statements of 001; on a cluster each table is a Replicated
-- <t>_local plus a Distributed <t> sharded by cityHash64(org_id), and the views
-- read and write the local tables of their shard.

-- Campaign performance, three grains. Raw rows arrive from the DSP importers
-- through MetricsWriter; materialized views roll them up into hourly and then
-- daily totals (materialized-views/). Reports read the rollups with sum() ...
-- GROUP BY, so they are right whether or not the background merges have run.

CREATE TABLE IF NOT EXISTS {{ local(campaign_metrics_raw) }}{{ on_cluster }}
(
    timestamp    DateTime CODEC(Delta, ZSTD(1)),
    org_id       UUID,
    campaign_id  UUID,
    dsp_type     LowCardinality(String),
    impressions  UInt64 CODEC(T64, ZSTD(1)),
    clicks       UInt64 CODEC(T64, ZSTD(1)),
    conversions  UInt64 CODEC(T64, ZSTD(1)),
    spend        Decimal(15, 2) CODEC(ZSTD(1)),
    revenue      Decimal(15, 2) CODEC(ZSTD(1))
)
ENGINE = {{ engine(MergeTree()) }}
PARTITION BY toYYYYMM(timestamp)
ORDER BY (org_id, campaign_id, timestamp)
TTL timestamp + INTERVAL 90 DAY DELETE;

{{ distributed(campaign_metrics_raw) }};

CREATE TABLE IF NOT EXISTS {{ local(campaign_metrics_hourly) }}{{ on_cluster }}
(
    hour         DateTime CODEC(Delta, ZSTD(1)),
    org_id       UUID,
    campaign_id  UUID,
    dsp_type     LowCardinality(String),
    impressions  UInt64 CODEC(T64, ZSTD(1)),
    clicks       UInt64 CODEC(T64, ZSTD(1)),
    conversions  UInt64 CODEC(T64, ZSTD(1)),
    spend        Decimal(18, 2) CODEC(ZSTD(1)),
    revenue      Decimal(18, 2) CODEC(ZSTD(1)),
    raw_rows     UInt64 CODEC(T64, ZSTD(1))
)
ENGINE = {{ engine(SummingMergeTree()) }}
PARTITION BY toYYYYMM(hour)
ORDER BY (org_id, campaign_id, dsp_type, hour)
TTL hour + INTERVAL 400 DAY DELETE;

{{ distributed(campaign_metrics_hourly) }};

CREATE TABLE IF NOT EXISTS {{ local(campaign_metrics_daily) }}{{ on_cluster }}
(
    date         Date CODEC(Delta, ZSTD(1)),
    org_id       UUID,
    campaign_id  UUID,
    dsp_type     LowCardinality(String),
    impressions  UInt64 CODEC(T64, ZSTD(1)),
    clicks       UInt64 CODEC(T64, ZSTD(1)),
    conversions  UInt64 CODEC(T64, ZSTD(1)),
    spend        Decimal(18, 2) CODEC(ZSTD(1)),
    revenue      Decimal(18, 2) CODEC(ZSTD(1)),
    raw_rows     UInt64 CODEC(T64, ZSTD(1))
)
ENGINE = {{ engine(SummingMergeTree()) }}
PARTITION BY toYear(date)
ORDER BY (org_id, campaign_id, dsp_type, date)
TTL date + INTERVAL 5 YEAR DELETE;

{{ distributed(campaign_metrics_daily) }};

-- raw -> hourly -> daily. Each view sees only the block being inserted and
-- writes its partial sums; SummingMergeTree folds them together in the
-- background, and readers sum() anyway. Chaining daily off hourly (not raw)
-- keeps the daily view's work proportional to the hourly rows.
CREATE MATERIALIZED VIEW IF NOT EXISTS campaign_metrics_hourly_mv{{ on_cluster }} TO {{ local(campaign_metrics_hourly) }} AS
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
FROM {{ local(campaign_metrics_raw) }}
GROUP BY hour, org_id, campaign_id, dsp_type;

CREATE MATERIALIZED VIEW IF NOT EXISTS campaign_metrics_daily_mv{{ on_cluster }} TO {{ local(campaign_metrics_daily) }} AS
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
FROM {{ local(campaign_metrics_hourly) }}
GROUP BY date, org_id, campaign_id, dsp_type;
