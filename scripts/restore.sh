#!/usr/bin/env bash
# Restore from a backup folder (or a folder of backups: the newest of each store).
# Manifests and checksums are checked before anything is touched; a non-empty
# target is refused unless --force.
#   ./scripts/restore.sh postgresql backups/postgresql-20260106T020000000000Z
#   ./scripts/restore.sh clickhouse backups/clickhouse-20260106T020000000000Z
#   ./scripts/restore.sh all backups --verify
source "$(dirname "${BASH_SOURCE[0]}")/_bootstrap.sh"
if [[ $# -lt 2 ]]; then
    echo "usage: $0 postgresql|clickhouse|redis|all PATH [--force] [--verify]" >&2
    exit 2
fi
store="$1"; path="$2"; shift 2
exec "$PLATFORMDB" restore "$store" "$path" "$@"
