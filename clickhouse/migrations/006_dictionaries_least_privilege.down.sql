-- Reverts 006_dictionaries_least_privilege to 003's shapes (campaigns_dict keyed by id),
-- still through the least-privilege login's named collection: a down migration never
-- writes credentials back into the DDL.
DROP DICTIONARY IF EXISTS campaigns_dict{{ on_cluster }} SYNC;
DROP DICTIONARY IF EXISTS organizations_dict{{ on_cluster }} SYNC;
CREATE DICTIONARY IF NOT EXISTS organizations_dict{{ on_cluster }}
(
    id      UUID,
    name    String,
    slug    String,
    status  String
)
PRIMARY KEY id
SOURCE(POSTGRESQL(NAME ${dictionary_source} table 'dictionary_organizations'))
LAYOUT(COMPLEX_KEY_HASHED())
LIFETIME(MIN 60 MAX 300);
CREATE DICTIONARY IF NOT EXISTS campaigns_dict{{ on_cluster }}
(
    id        UUID,
    org_id    UUID,
    name      String,
    status    String,
    currency  String
)
PRIMARY KEY id
SOURCE(POSTGRESQL(NAME ${dictionary_source} table 'dictionary_campaigns'))
LAYOUT(COMPLEX_KEY_HASHED())
LIFETIME(MIN 60 MAX 300);
