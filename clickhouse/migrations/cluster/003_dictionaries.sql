-- Cluster edition of 003_dictionaries.sql (which stays as applied: its checksum
-- is of the file text). Rendered for one node this template gives exactly the
-- statements of 003; on a cluster every node gets its own dictionaries.

-- Names from PostgreSQL, joined into reports without copying them: the
-- dictionaries read the tables directly (SOURCE(POSTGRESQL)) and refresh
-- every 1-5 minutes (or on SYSTEM RELOAD DICTIONARY). ${pg_*} are filled in
-- from PLATFORMDB_POSTGRES_URL when the migration is applied, so no
-- credentials live in this file. The login needs to read across tenants: in
-- production give it the platform_etl role (its *_etl_read policies).
CREATE DICTIONARY IF NOT EXISTS organizations_dict{{ on_cluster }}
(
    id      UUID,
    name    String,
    slug    String,
    status  String
)
PRIMARY KEY id
SOURCE(POSTGRESQL(
    host '${pg_host}' port '${pg_port}' user '${pg_user}' password '${pg_password}'
    db '${pg_db}' table 'organizations'
))
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
SOURCE(POSTGRESQL(
    host '${pg_host}' port '${pg_port}' user '${pg_user}' password '${pg_password}'
    db '${pg_db}' table 'campaigns'
))
LAYOUT(COMPLEX_KEY_HASHED())
LIFETIME(MIN 60 MAX 300);
