-- Pre-aggregated data for dashboards that would otherwise scan the event and
-- log tables: daily activity per tenant and event type (with distinct users
-- as an aggregate state, so days merge into weeks correctly), and hourly API
-- health per tenant, route and DSP (request and error counts, latency
-- quantiles as t-digest states). Fed by materialized views; read with the
-- -Merge combinators.
CREATE TABLE IF NOT EXISTS user_events_daily
(
    date        Date,
    org_id      UUID,
    event_type  LowCardinality(String),
    events      SimpleAggregateFunction(sum, UInt64),
    users       AggregateFunction(uniq, UUID)
)
ENGINE = AggregatingMergeTree()
PARTITION BY toYYYYMM(date)
ORDER BY (org_id, event_type, date)
TTL date + INTERVAL 2 YEAR DELETE
SETTINGS non_replicated_deduplication_window = 10000, replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS api_logs_hourly
(
    hour         DateTime,
    org_id       UUID,
    path         LowCardinality(String),
    dsp_type     LowCardinality(String),
    requests     SimpleAggregateFunction(sum, UInt64),
    errors       SimpleAggregateFunction(sum, UInt64),
    duration_ms  AggregateFunction(quantilesTDigest(0.5, 0.95, 0.99), UInt32)
)
ENGINE = AggregatingMergeTree()
PARTITION BY toYYYYMM(hour)
ORDER BY (org_id, path, dsp_type, hour)
TTL hour + INTERVAL 400 DAY DELETE
SETTINGS non_replicated_deduplication_window = 10000, replicated_deduplication_window = 10000;
