-- Cluster edition of 002_events_and_logs.sql (which stays as applied: its
-- checksum is of the file text). Rendered for one node this template gives
-- exactly the statements of 002.

-- User activity in the platform's UI and API (page views, edits, exports...),
-- kept 180 days. Ordered by tenant, then event type and time, which is how
-- activity reports filter.

CREATE TABLE IF NOT EXISTS {{ local(user_events) }}{{ on_cluster }}
(
    timestamp      DateTime64(3) CODEC(Delta, ZSTD(1)),
    org_id         UUID,
    user_id        UUID,
    session_id     String CODEC(ZSTD(1)),
    event_type     LowCardinality(String),
    resource_type  LowCardinality(String),
    resource_id    String CODEC(ZSTD(1)),
    properties     String CODEC(ZSTD(3)),
    ip             IPv6,
    user_agent     String CODEC(ZSTD(3))
)
ENGINE = {{ engine(MergeTree()) }}
PARTITION BY toYYYYMM(timestamp)
ORDER BY (org_id, event_type, timestamp)
TTL toDateTime(timestamp) + INTERVAL 180 DAY DELETE;

{{ distributed(user_events) }};

-- Requests served by the platform's API and calls made to DSP APIs
-- (dsp_type set), kept 30 days: enough for incident review and rate-limit
-- tuning, short because the volume is the highest of all tables.
CREATE TABLE IF NOT EXISTS {{ local(api_logs) }}{{ on_cluster }}
(
    timestamp       DateTime64(3) CODEC(Delta, ZSTD(1)),
    org_id          UUID,
    user_id         UUID,
    request_id      String CODEC(ZSTD(1)),
    method          LowCardinality(String),
    path            LowCardinality(String),
    status_code     UInt16,
    duration_ms     UInt32 CODEC(T64, ZSTD(1)),
    request_bytes   UInt32 CODEC(T64, ZSTD(1)),
    response_bytes  UInt32 CODEC(T64, ZSTD(1)),
    dsp_type        LowCardinality(String),
    error           String CODEC(ZSTD(3))
)
ENGINE = {{ engine(MergeTree()) }}
PARTITION BY toYYYYMMDD(timestamp)
ORDER BY (org_id, timestamp)
TTL toDateTime(timestamp) + INTERVAL 30 DAY DELETE;

{{ distributed(api_logs) }};

-- Pre-aggregated data for dashboards that would otherwise scan the event and
-- log tables: daily activity per tenant and event type (with distinct users
-- as an aggregate state, so days merge into weeks correctly), and hourly API
-- health per tenant, route and DSP (request and error counts, latency
-- quantiles as t-digest states). Fed by materialized views; read with the
-- -Merge combinators.
CREATE TABLE IF NOT EXISTS {{ local(user_events_daily) }}{{ on_cluster }}
(
    date        Date,
    org_id      UUID,
    event_type  LowCardinality(String),
    events      SimpleAggregateFunction(sum, UInt64),
    users       AggregateFunction(uniq, UUID)
)
ENGINE = {{ engine(AggregatingMergeTree()) }}
PARTITION BY toYYYYMM(date)
ORDER BY (org_id, event_type, date)
TTL date + INTERVAL 2 YEAR DELETE;

{{ distributed(user_events_daily) }};

CREATE TABLE IF NOT EXISTS {{ local(api_logs_hourly) }}{{ on_cluster }}
(
    hour         DateTime,
    org_id       UUID,
    path         LowCardinality(String),
    dsp_type     LowCardinality(String),
    requests     SimpleAggregateFunction(sum, UInt64),
    errors       SimpleAggregateFunction(sum, UInt64),
    duration_ms  AggregateFunction(quantilesTDigest(0.5, 0.95, 0.99), UInt32)
)
ENGINE = {{ engine(AggregatingMergeTree()) }}
PARTITION BY toYYYYMM(hour)
ORDER BY (org_id, path, dsp_type, hour)
TTL hour + INTERVAL 400 DAY DELETE;

{{ distributed(api_logs_hourly) }};

-- Feed the pre-aggregations of tables/aggregations.sql.
CREATE MATERIALIZED VIEW IF NOT EXISTS user_events_daily_mv{{ on_cluster }} TO {{ local(user_events_daily) }} AS
SELECT
    toDate(timestamp) AS date,
    org_id,
    event_type,
    count() AS events,
    uniqState(user_id) AS users
FROM {{ local(user_events) }}
GROUP BY date, org_id, event_type;

CREATE MATERIALIZED VIEW IF NOT EXISTS api_logs_hourly_mv{{ on_cluster }} TO {{ local(api_logs_hourly) }} AS
SELECT
    toStartOfHour(timestamp) AS hour,
    org_id,
    path,
    dsp_type,
    count() AS requests,
    countIf(status_code >= 500 OR error != '') AS errors,
    quantilesTDigestState(0.5, 0.95, 0.99)(duration_ms) AS duration_ms
FROM {{ local(api_logs) }}
GROUP BY hour, org_id, path, dsp_type;
