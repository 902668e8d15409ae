-- Reverts 001_campaign_metrics (views first: they write into the tables).
DROP VIEW IF EXISTS campaign_metrics_daily_mv;
DROP VIEW IF EXISTS campaign_metrics_hourly_mv;
DROP TABLE IF EXISTS campaign_metrics_daily;
DROP TABLE IF EXISTS campaign_metrics_hourly;
DROP TABLE IF EXISTS campaign_metrics_raw;
