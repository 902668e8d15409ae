-- Reverts 005_wide_money_rollups. Narrowing fails (and leaves the mutation to be killed)
-- if a rollup already holds a sum above 9,999,999,999,999,999.99: such data cannot go back.
{{ cluster_only }} ALTER TABLE campaign_metrics_daily{{ on_cluster }}
    MODIFY COLUMN spend Decimal(18, 2), MODIFY COLUMN revenue Decimal(18, 2);
{{ cluster_only }} ALTER TABLE campaign_metrics_hourly{{ on_cluster }}
    MODIFY COLUMN spend Decimal(18, 2), MODIFY COLUMN revenue Decimal(18, 2);
ALTER TABLE {{ local(campaign_metrics_daily) }}{{ on_cluster }}
    MODIFY COLUMN spend Decimal(18, 2) CODEC(ZSTD(1)),
    MODIFY COLUMN revenue Decimal(18, 2) CODEC(ZSTD(1));
ALTER TABLE {{ local(campaign_metrics_hourly) }}{{ on_cluster }}
    MODIFY COLUMN spend Decimal(18, 2) CODEC(ZSTD(1)),
    MODIFY COLUMN revenue Decimal(18, 2) CODEC(ZSTD(1));
