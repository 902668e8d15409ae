#!/usr/bin/env bash
# Back up the databases into ./backups (or --out DIR): one folder per store,
# named <store>-<UTC time>, each with a manifest (versions, ledgers, row counts,
# checksums).
#   ./scripts/backup.sh postgresql   # pg_dump, custom format (--format directory -j N: parallel)
#   ./scripts/backup.sh clickhouse   # every table in Native format + DDL
#   ./scripts/backup.sh redis        # logical dump of every key, works against remote servers
#   ./scripts/backup.sh all          # all three, as one set
#   ./scripts/backup.sh clickhouse --archive   # one .tar file instead of a folder
#   ./scripts/backup.sh verify [SET]  # the restore drill of a set (default: the newest)
# Each backup is checked against its manifest and recorded as the last good one
# (backups/platformdb-backups.json: the exporter's backup age, --backup-dir backups).
PLATFORMDB_EXTRAS="${PLATFORMDB_EXTRAS:-cli,embedded}"
source "$(dirname "${BASH_SOURCE[0]}")/_bootstrap.sh"
store="${1:-all}"
[[ $# -gt 0 ]] && shift
case "$store" in
    postgresql|clickhouse|redis|all|verify) exec "$PLATFORMDB" backup "$store" "$@" ;;
    *) echo "usage: $0 postgresql | clickhouse | redis | all | verify [SET] [--out DIR]" >&2; exit 2 ;;
esac
