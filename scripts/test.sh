#!/usr/bin/env bash
# Run the test suite against real servers (the embedded stack by default).
#   ./scripts/test.sh               # everything: lint, then every test
#   ./scripts/test.sh postgresql    # PostgreSQL: engine, schema, SQL tests
#   ./scripts/test.sh clickhouse    # ClickHouse (chDB)
#   ./scripts/test.sh redis         # Redis
#   ./scripts/test.sh -- -k tenant  # anything after -- goes to pytest
# PLATFORMDB_TEST_POSTGRES_URL / PLATFORMDB_TEST_REDIS_URL add a second target.
source "$(dirname "${BASH_SOURCE[0]}")/_bootstrap.sh"
suite="${1:-all}"
[[ $# -gt 0 ]] && shift
[[ "${1:-}" == "--" ]] && shift
case "$suite" in
    all)        paths=(tests) ;;
    postgresql) paths=(tests/migrate tests/postgres tests/test_cli.py) ;;
    clickhouse) paths=(tests/clickhouse) ;;
    redis)      paths=(tests/redis) ;;
    --)         paths=(tests) ;;
    *) echo "usage: $0 [all|postgresql|clickhouse|redis] [-- pytest args]" >&2; exit 2 ;;
esac
existing=()
for p in "${paths[@]}"; do [[ -e "$p" ]] && existing+=("$p"); done
if [[ ${#existing[@]} -eq 0 ]]; then
    echo "error: no tests for '$suite' yet" >&2
    exit 2
fi
exec .venv/bin/python -m pytest "${existing[@]}" "$@"
