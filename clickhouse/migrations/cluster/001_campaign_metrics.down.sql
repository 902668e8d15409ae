-- Cluster edition of the down file; reverts 001_campaign_metrics (views first: they write into the tables).
DROP VIEW IF EXISTS campaign_metrics_daily_mv{{ on_cluster }} SYNC;
DROP VIEW IF EXISTS campaign_metrics_hourly_mv{{ on_cluster }} SYNC;
{{ drop_table(campaign_metrics_daily) }};
{{ drop_table(campaign_metrics_hourly) }};
{{ drop_table(campaign_metrics_raw) }};
