# Sourced by the other scripts: cd to the repository and make sure .venv is
# installed and current (re-installed when pyproject.toml changes).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
STAMP=".venv/.platformdb-installed"
WANT="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [[ ! -x .venv/bin/python ]] || [[ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]]; then
    if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
        echo "error: platformdb needs Python 3.11+; set PYTHON=/path/to/python3.11" >&2
        exit 2
    fi
    echo "setting up .venv (first run or pyproject.toml changed)..." >&2
    [[ -x .venv/bin/python ]] || "$PY" -m venv .venv
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip >&2
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[all,test,lint]' >&2
    echo "$WANT" > "$STAMP"
fi
PLATFORMDB=".venv/bin/platformdb"
