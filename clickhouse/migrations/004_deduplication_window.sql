-- 004_deduplication_window: a retried MetricsWriter batch must never count twice.
-- Every batch carries an insert_deduplication_token (see platformdb.clickhouse.writer).
-- A non-replicated MergeTree remembers the tokens of its last N blocks only when
-- non_replicated_deduplication_window is set; Replicated and managed tables use
-- replicated_deduplication_window. The rollups and pre-aggregations get the window
-- too: with deduplicate_blocks_in_dependent_materialized_views the blocks a view writes
-- are deduplicated by tokens derived from the source block's, so a retry after a view
-- failed completes the rollups without adding again what was already written.
-- Metadata only: no part is rewritten.
ALTER TABLE {{ local(campaign_metrics_raw) }}{{ on_cluster }}
    MODIFY SETTING non_replicated_deduplication_window = 10000,
                   replicated_deduplication_window = 10000;

ALTER TABLE {{ local(campaign_metrics_hourly) }}{{ on_cluster }}
    MODIFY SETTING non_replicated_deduplication_window = 10000,
                   replicated_deduplication_window = 10000;

ALTER TABLE {{ local(campaign_metrics_daily) }}{{ on_cluster }}
    MODIFY SETTING non_replicated_deduplication_window = 10000,
                   replicated_deduplication_window = 10000;

ALTER TABLE {{ local(user_events) }}{{ on_cluster }}
    MODIFY SETTING non_replicated_deduplication_window = 10000,
                   replicated_deduplication_window = 10000;

ALTER TABLE {{ local(api_logs) }}{{ on_cluster }}
    MODIFY SETTING non_replicated_deduplication_window = 10000,
                   replicated_deduplication_window = 10000;

ALTER TABLE {{ local(user_events_daily) }}{{ on_cluster }}
    MODIFY SETTING non_replicated_deduplication_window = 10000,
                   replicated_deduplication_window = 10000;

ALTER TABLE {{ local(api_logs_hourly) }}{{ on_cluster }}
    MODIFY SETTING non_replicated_deduplication_window = 10000,
                   replicated_deduplication_window = 10000;
