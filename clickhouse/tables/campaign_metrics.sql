-- Campaign performance, three grains. Raw rows arrive from the DSP importers
-- through MetricsWriter; materialized views roll them up into hourly and then
-- daily totals (materialized-views/). Reports read the rollups with sum() ...
-- GROUP BY, so they are right whether or not the background merges have run.
-- This is the schema the migrations build (001, 004: deduplication windows so a
-- retried batch never counts twice, 005: Decimal(38, 2) rollup money that no
-- accepted input can overflow); the migrations are the source of truth.
CREATE TABLE IF NOT EXISTS campaign_metrics_raw
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
ENGINE = MergeTree()
PARTITION BY toYYYYMM(timestamp)
ORDER BY (org_id, campaign_id, timestamp)
TTL timestamp + INTERVAL 90 DAY DELETE
SETTINGS non_replicated_deduplication_window = 10000, replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS campaign_metrics_hourly
(
    hour         DateTime CODEC(Delta, ZSTD(1)),
    org_id       UUID,
    campaign_id  UUID,
    dsp_type     LowCardinality(String),
    impressions  UInt64 CODEC(T64, ZSTD(1)),
    clicks       UInt64 CODEC(T64, ZSTD(1)),
    conversions  UInt64 CODEC(T64, ZSTD(1)),
    spend        Decimal(38, 2) CODEC(ZSTD(1)),
    revenue      Decimal(38, 2) CODEC(ZSTD(1)),
    raw_rows     UInt64 CODEC(T64, ZSTD(1))
)
ENGINE = SummingMergeTree()
PARTITION BY toYYYYMM(hour)
ORDER BY (org_id, campaign_id, dsp_type, hour)
TTL hour + INTERVAL 400 DAY DELETE
SETTINGS non_replicated_deduplication_window = 10000, replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS campaign_metrics_daily
(
    date         Date CODEC(Delta, ZSTD(1)),
    org_id       UUID,
    campaign_id  UUID,
    dsp_type     LowCardinality(String),
    impressions  UInt64 CODEC(T64, ZSTD(1)),
    clicks       UInt64 CODEC(T64, ZSTD(1)),
    conversions  UInt64 CODEC(T64, ZSTD(1)),
    spend        Decimal(38, 2) CODEC(ZSTD(1)),
    revenue      Decimal(38, 2) CODEC(ZSTD(1)),
    raw_rows     UInt64 CODEC(T64, ZSTD(1))
)
ENGINE = SummingMergeTree()
PARTITION BY toYear(date)
ORDER BY (org_id, campaign_id, dsp_type, date)
TTL date + INTERVAL 5 YEAR DELETE
SETTINGS non_replicated_deduplication_window = 10000, replicated_deduplication_window = 10000;
