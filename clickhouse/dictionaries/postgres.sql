-- Names from PostgreSQL, joined into reports without copying them: the
-- dictionaries read two views, public.dictionary_organizations and
-- public.dictionary_campaigns, and refresh every 1-5 minutes (or on SYSTEM
-- RELOAD DICTIONARY). They log in as a member of platform_dictionary, which can
-- read exactly those views, through a named collection (${dictionary_source},
-- filled in when the migration is applied): no credentials in this file or in
-- the DDL ClickHouse keeps (docs/CLICKHOUSE.md, Security). campaigns_dict is
-- keyed by (org_id, id): campaign ids are unique only within an org.
CREATE DICTIONARY IF NOT EXISTS organizations_dict
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

CREATE DICTIONARY IF NOT EXISTS campaigns_dict
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
