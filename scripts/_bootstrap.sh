# Sourced by the other scripts: cd to the repository and make sure .venv holds
# platformdb with the extras this script needs (PLATFORMDB_EXTRAS, set by the
# caller; default everything). A first run installs only those: migrate.sh
# needs the CLI and the embedded stack, test.sh adds the test and lint tools.
# .venv is brought up to date when pyproject.toml changes.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
STAMP=".venv/.platformdb-installed"
EXTRAS="${PLATFORMDB_EXTRAS:-all,test,lint}"
WANT="$(sha256sum pyproject.toml | cut -d' ' -f1)"
# The stamp holds pyproject.toml's hash, then the extras installed, one per line.
have_all() {
    [[ -x .venv/bin/python && -f "$STAMP" ]] || return 1
    [[ "$(head -n1 "$STAMP")" == "$WANT" ]] || return 1
    local extra
    for extra in ${EXTRAS//,/ }; do
        grep -qx "$extra" <(tail -n +2 "$STAMP") || return 1
    done
}
if ! have_all; then
    if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
        echo "error: platformdb needs Python 3.11+; set PYTHON=/path/to/python3.11" >&2
        exit 2
    fi
    started=$SECONDS
    installed=()
    if [[ -f "$STAMP" && "$(head -n1 "$STAMP")" == "$WANT" ]]; then
        mapfile -t installed < <(tail -n +2 "$STAMP")
    fi
    wanted=$(printf '%s\n' "${installed[@]}" ${EXTRAS//,/ } | sed '/^$/d' | sort -u | paste -sd, -)
    if [[ ! -x .venv/bin/python ]]; then
        echo "setup: creating .venv with $("$PY" --version)" >&2
        "$PY" -m venv .venv
    fi
    echo "setup: installing platformdb[$wanted] into .venv (first run or pyproject.toml changed; a minute or two)" >&2
    # pip prints one line per package it installs; show those, not its chatter. No byte
    # compiling of every installed module (half the time): Python compiles what it imports.
    if ! .venv/bin/python -m pip install --disable-pip-version-check --progress-bar off --no-compile \
            -e ".[$wanted]" 2>&1 | { grep -E '^(Successfully installed|ERROR)' || true; } \
            | sed 's/^Successfully installed/setup: installed/' >&2; then
        echo "error: installing platformdb[$wanted] failed; run .venv/bin/python -m pip install -e '.[$wanted]' to see why" >&2
        exit 2
    fi
    { echo "$WANT"; printf '%s\n' ${wanted//,/ }; } > "$STAMP"
    echo "setup: ready in $((SECONDS - started)) s" >&2
fi
PLATFORMDB=".venv/bin/platformdb"
