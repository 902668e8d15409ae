-- Cluster edition of the down file; reverts 003_dictionaries.
DROP DICTIONARY IF EXISTS campaigns_dict{{ on_cluster }} SYNC;
DROP DICTIONARY IF EXISTS organizations_dict{{ on_cluster }} SYNC;
