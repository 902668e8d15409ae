#!/usr/bin/env bash
# Run database migrations: up | down | status | run NNN | verify | new NAME
#   ./scripts/migrate.sh up         # apply every pending migration (all stores)
#   ./scripts/migrate.sh down       # roll back the last PostgreSQL migration
#   ./scripts/migrate.sh status     # what is applied, what is pending
#   ./scripts/migrate.sh run 001    # apply one migration
# With no PLATFORMDB_POSTGRES_URL set, the embedded stack is started first.
PLATFORMDB_EXTRAS="${PLATFORMDB_EXTRAS:-cli,embedded}"
source "$(dirname "${BASH_SOURCE[0]}")/_bootstrap.sh"
if [[ $# -eq 0 ]]; then
    set -- up
fi
exec "$PLATFORMDB" migrate "$@"
