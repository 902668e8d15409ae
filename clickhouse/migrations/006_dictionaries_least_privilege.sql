-- 006_dictionaries_least_privilege: the dictionaries stop carrying the owner's credentials.
-- 003 wrote the PostgreSQL URL it was given (often the migration owner, a superuser that
-- also bypasses row-level security) in clear into each dictionary's DDL. Now they read two
-- views, public.dictionary_organizations and public.dictionary_campaigns, as a login that
-- is a member of platform_dictionary (which can read exactly those views, across tenants),
-- through a named collection: no password is in the DDL (see docs/CLICKHOUSE.md, Security).
-- ${dictionary_source} is the collection's name, filled in when the migration is applied.
-- campaigns_dict is keyed by (org_id, id): campaign ids are unique only within an org.
-- SYNC: the old definitions, with the old credentials, are removed from disk at once.
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
    org_id    UUID,
    id        UUID,
    name      String,
    status    String,
    currency  String
)
PRIMARY KEY org_id, id
SOURCE(POSTGRESQL(NAME ${dictionary_source} table 'dictionary_campaigns'))
LAYOUT(COMPLEX_KEY_HASHED())
LIFETIME(MIN 60 MAX 300);
