-- Cluster edition of the down file; reverts 002_events_and_logs.
DROP VIEW IF EXISTS api_logs_hourly_mv{{ on_cluster }} SYNC;
DROP VIEW IF EXISTS user_events_daily_mv{{ on_cluster }} SYNC;
{{ drop_table(api_logs_hourly) }};
{{ drop_table(user_events_daily) }};
{{ drop_table(api_logs) }};
{{ drop_table(user_events) }};
