#!/usr/bin/env bash
# Run the test suite against real servers (the embedded stack by default).
#   ./scripts/test.sh               # everything: lint and static checks, then every test
#   ./scripts/test.sh fast          # the inner loop (< 2 min): no slow tests, embedded stack only
#   ./scripts/test.sh lint          # lint only: platformdb lint, ruff, mypy, import contracts,
#                                   #   generated code, workflow checks
#   ./scripts/test.sh postgresql    # PostgreSQL: engine, schema, SQL tests
#   ./scripts/test.sh clickhouse    # ClickHouse (chDB)
#   ./scripts/test.sh redis         # Redis
#   ./scripts/test.sh -- -k tenant  # no lint; anything after -- goes to pytest
#   ./scripts/test.sh -- tests/tenant   # ... and named paths run instead of all of tests/
# PLATFORMDB_TEST_POSTGRES_URL / PLATFORMDB_TEST_REDIS_URL add a second target.
source "$(dirname "${BASH_SOURCE[0]}")/_bootstrap.sh"
suite="${1:-all}"
[[ $# -gt 0 ]] && shift
[[ "${1:-}" == "--" ]] && shift
run_lint() {
    echo "== lint" >&2
    "$PLATFORMDB" lint
    echo "== ruff (whole repository)" >&2
    .venv/bin/ruff check .
    echo "== mypy --strict (src)" >&2
    .venv/bin/mypy
    echo "== import contracts (tools/contracts.py)" >&2
    .venv/bin/python tools/contracts.py
    if [[ -f tools/async_to_sync.py ]]; then
        echo "== generated sync code is current" >&2
        .venv/bin/python tools/async_to_sync.py --check
    fi
    ./scripts/lint-workflows.sh
}
extra=()
case "$suite" in
    lint)       run_lint; exit 0 ;;
    all)        run_lint; paths=(tests) ;;
    fast)       paths=(tests); extra=(-m "not slow")
                unset PLATFORMDB_TEST_POSTGRES_URL PLATFORMDB_TEST_REDIS_URL ;;
    --)         paths=(tests)  # unless the arguments name tests themselves
                for arg in "$@"; do [[ -e "${arg%%::*}" ]] && paths=() && break; done ;;
    postgresql) paths=(tests/migrate tests/postgres tests/stores/postgres tests/test_cli.py) ;;
    clickhouse) paths=(tests/clickhouse tests/stores/clickhouse) ;;
    redis)      paths=(tests/redis tests/stores/redis) ;;
    *) echo "usage: $0 [all|fast|lint|postgresql|clickhouse|redis] [-- pytest args]" >&2; exit 2 ;;
esac
existing=()
for p in "${paths[@]}"; do [[ -e "$p" ]] && existing+=("$p"); done
if [[ ${#existing[@]} -eq 0 && "$suite" != "--" ]]; then
    echo "error: no tests for '$suite' yet" >&2
    exit 2
fi
echo "== tests" >&2
exec .venv/bin/python -m pytest "${existing[@]}" "${extra[@]}" "$@"
