-- 005_wide_money_rollups: money in the rollups never wraps.
-- A raw row holds at most 9,999,999,999,999.99 (Decimal(15, 2), checked by the writer),
-- and SummingMergeTree adds rows in the column's own type when parts merge, without an
-- overflow check: Decimal(18, 2) sums wrapped to negative numbers after a merge of two
-- batches of 5,000 rows at the maximum. Decimal(38, 2) holds the sum of 10^23 such rows.
-- The views need no change: sum() of a Decimal is already a Decimal(38, s).
-- Rewrites the two money columns of the hourly and daily rollups (small tables).
ALTER TABLE {{ local(campaign_metrics_hourly) }}{{ on_cluster }}
    MODIFY COLUMN spend Decimal(38, 2) CODEC(ZSTD(1)),
    MODIFY COLUMN revenue Decimal(38, 2) CODEC(ZSTD(1));

ALTER TABLE {{ local(campaign_metrics_daily) }}{{ on_cluster }}
    MODIFY COLUMN spend Decimal(38, 2) CODEC(ZSTD(1)),
    MODIFY COLUMN revenue Decimal(38, 2) CODEC(ZSTD(1));

-- On a cluster the Distributed tables describe the same columns.
{{ cluster_only }} ALTER TABLE campaign_metrics_hourly{{ on_cluster }}
    MODIFY COLUMN spend Decimal(38, 2), MODIFY COLUMN revenue Decimal(38, 2);

{{ cluster_only }} ALTER TABLE campaign_metrics_daily{{ on_cluster }}
    MODIFY COLUMN spend Decimal(38, 2), MODIFY COLUMN revenue Decimal(38, 2);
