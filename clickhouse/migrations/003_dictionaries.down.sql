-- Reverts 003_dictionaries.
DROP DICTIONARY IF EXISTS campaigns_dict;
DROP DICTIONARY IF EXISTS organizations_dict;
