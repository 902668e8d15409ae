-- User activity in the platform's UI and API (page views, edits, exports...),
-- kept 180 days. Ordered by tenant, then event type and time, which is how
-- activity reports filter.
CREATE TABLE IF NOT EXISTS user_events
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
ENGINE = MergeTree()
PARTITION BY toYYYYMM(timestamp)
ORDER BY (org_id, event_type, timestamp)
TTL toDateTime(timestamp) + INTERVAL 180 DAY DELETE
SETTINGS non_replicated_deduplication_window = 10000, replicated_deduplication_window = 10000;
