-- Requests served by the platform's API and calls made to DSP APIs
-- (dsp_type set), kept 30 days: enough for incident review and rate-limit
-- tuning, short because the volume is the highest of all tables.
CREATE TABLE IF NOT EXISTS api_logs
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
ENGINE = MergeTree()
PARTITION BY toYYYYMMDD(timestamp)
ORDER BY (org_id, timestamp)
TTL toDateTime(timestamp) + INTERVAL 30 DAY DELETE
SETTINGS non_replicated_deduplication_window = 10000, replicated_deduplication_window = 10000;
