#!/usr/bin/env bash
# Run the test suite against real servers (the embedded stack by default).
#   ./scripts/test.sh               # everything: lint, then every test
#   ./scripts/test.sh lint          # lint only: platformdb lint + the workflow checks
#   ./scripts/test.sh postgresql    # PostgreSQL: engine, schema, SQL tests
#   ./scripts/test.sh clickhouse    # ClickHouse (chDB)
#   ./scripts/test.sh redis         # Redis
#   ./scripts/test.sh -- -k tenant  # no lint; anything after -- goes to pytest
# PLATFORMDB_TEST_POSTGRES_URL / PLATFORMDB_TEST_REDIS_URL add a second target.
source "$(dirname "${BASH_SOURCE[0]}")/_bootstrap.sh"
suite="${1:-all}"
[[ $# -gt 0 ]] && shift
[[ "${1:-}" == "--" ]] && shift
run_lint() {
    echo "== lint" >&2
    "$PLATFORMDB" lint
    ./scripts/lint-workflows.sh
}
case "$suite" in
    lint)       run_lint; exit 0 ;;
    all)        run_lint; paths=(tests) ;;
    --)         paths=(tests) ;;
    postgresql) paths=(tests/migrate tests/postgres tests/test_cli.py) ;;
    clickhouse) paths=(tests/clickhouse) ;;
    redis)      paths=(tests/redis) ;;
    *) echo "usage: $0 [all|lint|postgresql|clickhouse|redis] [-- pytest args]" >&2; exit 2 ;;
esac
existing=()
for p in "${paths[@]}"; do [[ -e "$p" ]] && existing+=("$p"); done
if [[ ${#existing[@]} -eq 0 ]]; then
    echo "error: no tests for '$suite' yet" >&2
    exit 2
fi
echo "== tests" >&2
exec .venv/bin/python -m pytest "${existing[@]}" "$@"
