-- Partitioning: tenant tables are hashed by org_id into 8 partitions;
-- campaign_metrics and audit_logs are monthly, hashed by org_id within the
-- month, with a default partition. A row for a month without a partition
-- lands in the default; ensure_date_partitions moves it into its month;
-- drop_date_partitions_before removes whole months.
\set ON_ERROR_STOP on
BEGIN;

INSERT INTO organizations (id, name, slug)
VALUES ('12000000-0000-4000-8000-000000000001', 'Partitions', 'partitions-test');
INSERT INTO campaigns (org_id, id, name)
VALUES ('12000000-0000-4000-8000-000000000001', '42000000-0000-4000-8000-000000000001', 'P');
INSERT INTO campaign_metrics (org_id, campaign_id, metric_date, dsp_type, impressions, spend)
VALUES ('12000000-0000-4000-8000-000000000001', '42000000-0000-4000-8000-000000000001',
        '2099-03-15', 'dv360', 100, 1.50),
       ('12000000-0000-4000-8000-000000000001', '42000000-0000-4000-8000-000000000001',
        current_date, 'dv360', 200, 2.50);

DO $$
DECLARE
    v_where text;
    v_count bigint;
BEGIN
    SELECT count(*) INTO v_count FROM pg_inherits WHERE inhparent = 'public.users'::regclass;
    ASSERT v_count = 8, format('users has %s hash partitions, expected 8', v_count);

    SELECT tableoid::regclass::text INTO v_where FROM campaign_metrics WHERE metric_date = '2099-03-15';
    ASSERT v_where = 'partitions.campaign_metrics_default',
        'a row of a month without partition did not land in the default partition: ' || v_where;
    SELECT tableoid::regclass::text INTO v_where FROM campaign_metrics WHERE metric_date = current_date;
    ASSERT v_where LIKE 'partitions.campaign_metrics_y%_h_',
        'this month''s row is not in a monthly hash partition: ' || v_where;

    ASSERT ensure_date_partitions('campaign_metrics', '2099-02-01', 3) = 3, 'expected 3 new months';
    ASSERT ensure_date_partitions('campaign_metrics', '2099-02-01', 3) = 0, 'ensure is not idempotent';
    SELECT tableoid::regclass::text INTO v_where FROM campaign_metrics WHERE metric_date = '2099-03-15';
    ASSERT v_where LIKE 'partitions.campaign_metrics_y2099m03_h_',
        'the default partition''s row was not moved into its month: ' || v_where;
    SELECT count(*) INTO v_count FROM partitions.campaign_metrics_default;
    ASSERT v_count = 0, 'rows left behind in the default partition';

    SELECT count(*) INTO v_count FROM drop_date_partitions_before('campaign_metrics', '2099-03-01', true);
    ASSERT v_count > 0, 'dry run listed no partition';
    ASSERT to_regclass('partitions.campaign_metrics_y2099m02') IS NOT NULL, 'dry run dropped a partition';
    PERFORM drop_date_partitions_before('campaign_metrics', '2099-04-01');
    ASSERT to_regclass('partitions.campaign_metrics_y2099m03') IS NULL, 'March 2099 was not dropped';
    ASSERT to_regclass('partitions.campaign_metrics_y2099m04') IS NOT NULL, 'April 2099 was dropped';
    SELECT count(*) INTO v_count FROM campaign_metrics;
    ASSERT v_count = 0, 'rows of dropped months are still visible';

    BEGIN
        PERFORM ensure_date_partitions('users', current_date, 1);
        ASSERT false, 'ensure_date_partitions accepted a hash-partitioned table';
    EXCEPTION WHEN invalid_parameter_value THEN NULL;
    END;
END
$$;

ROLLBACK;
