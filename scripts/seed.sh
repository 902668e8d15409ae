#!/usr/bin/env bash
# Load seed data (starts the embedded stack when no server is configured).
#   ./scripts/seed.sh test            # the spec's test dataset (1 org, 2 users, 1 campaign)
#   ./scripts/seed.sh demo            # deterministic demo across PostgreSQL, ClickHouse, Redis
#   ./scripts/seed.sh load [--scale N]  # load-test dataset (scale 1: 10M PG / 50M CH rows)
#   ./scripts/seed.sh clear [--force]   # remove seed data; schema and reference data stay
# With no argument: test.
PLATFORMDB_EXTRAS="${PLATFORMDB_EXTRAS:-cli,embedded,load}"
source "$(dirname "${BASH_SOURCE[0]}")/_bootstrap.sh"
dataset="${1:-test}"
[[ $# -gt 0 ]] && shift
case "$dataset" in
    test|demo|load|clear) exec "$PLATFORMDB" seed "$dataset" "$@" ;;
    *) echo "usage: $0 test | demo | load [--scale N] | clear [--force]" >&2; exit 2 ;;
esac
