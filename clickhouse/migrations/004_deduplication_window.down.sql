-- Reverts 004_deduplication_window: back to the engine's default windows.
ALTER TABLE {{ local(api_logs_hourly) }}{{ on_cluster }}
    RESET SETTING non_replicated_deduplication_window, replicated_deduplication_window;
ALTER TABLE {{ local(user_events_daily) }}{{ on_cluster }}
    RESET SETTING non_replicated_deduplication_window, replicated_deduplication_window;
ALTER TABLE {{ local(api_logs) }}{{ on_cluster }}
    RESET SETTING non_replicated_deduplication_window, replicated_deduplication_window;
ALTER TABLE {{ local(user_events) }}{{ on_cluster }}
    RESET SETTING non_replicated_deduplication_window, replicated_deduplication_window;
ALTER TABLE {{ local(campaign_metrics_daily) }}{{ on_cluster }}
    RESET SETTING non_replicated_deduplication_window, replicated_deduplication_window;
ALTER TABLE {{ local(campaign_metrics_hourly) }}{{ on_cluster }}
    RESET SETTING non_replicated_deduplication_window, replicated_deduplication_window;
ALTER TABLE {{ local(campaign_metrics_raw) }}{{ on_cluster }}
    RESET SETTING non_replicated_deduplication_window, replicated_deduplication_window;
