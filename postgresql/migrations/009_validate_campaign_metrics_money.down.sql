-- Reverts 009_validate_campaign_metrics_money: nothing to undo. A validated
-- constraint stays valid (PostgreSQL cannot mark it NOT VALID again), which
-- changes no data; 008's down file replaces the constraint anyway.
SELECT 1;
