-- Reverts 002_events_and_logs.
DROP VIEW IF EXISTS api_logs_hourly_mv;
DROP VIEW IF EXISTS user_events_daily_mv;
DROP TABLE IF EXISTS api_logs_hourly;
DROP TABLE IF EXISTS user_events_daily;
DROP TABLE IF EXISTS api_logs;
DROP TABLE IF EXISTS user_events;
