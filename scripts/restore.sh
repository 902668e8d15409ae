#!/usr/bin/env bash
# Restore from a backup; a non-empty target is refused unless --force, and a restore
# that fails changes nothing (it is staged beside the target, checked, then switched in).
#   ./scripts/restore.sh postgresql backups/postgresql-20260106T020000000000Z   # a folder
#   ./scripts/restore.sh all backups --verify                    # the newest set, all or nothing
#   ./scripts/restore.sh postgresql backup-2026-01-06.sql        # pg_dump > file.sql (or -Fc)
#   ./scripts/restore.sh clickhouse backup-2026-01-06.tar        # `backup clickhouse --archive`
# Folders and archives are checked against their manifests first.
PLATFORMDB_EXTRAS="${PLATFORMDB_EXTRAS:-cli,embedded}"
source "$(dirname "${BASH_SOURCE[0]}")/_bootstrap.sh"
if [[ $# -lt 2 ]]; then
    echo "usage: $0 postgresql|clickhouse|redis|all PATH [--force] [--verify]" >&2
    exit 2
fi
store="$1"; path="$2"; shift 2
exec "$PLATFORMDB" restore "$store" "$path" "$@"
