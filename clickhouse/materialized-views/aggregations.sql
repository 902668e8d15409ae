-- Feed the pre-aggregations of tables/aggregations.sql.
CREATE MATERIALIZED VIEW IF NOT EXISTS user_events_daily_mv TO user_events_daily AS
SELECT
    toDate(timestamp) AS date,
    org_id,
    event_type,
    count() AS events,
    uniqState(user_id) AS users
FROM user_events
GROUP BY date, org_id, event_type;

CREATE MATERIALIZED VIEW IF NOT EXISTS api_logs_hourly_mv TO api_logs_hourly AS
SELECT
    toStartOfHour(timestamp) AS hour,
    org_id,
    path,
    dsp_type,
    count() AS requests,
    countIf(status_code >= 500 OR error != '') AS errors,
    quantilesTDigestState(0.5, 0.95, 0.99)(duration_ms) AS duration_ms
FROM api_logs
GROUP BY hour, org_id, path, dsp_type;
