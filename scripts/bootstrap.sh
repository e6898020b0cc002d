#!/usr/bin/env bash
# Create .venv (if needed) and install usfad with every optional group at pinned versions.
# Idempotent: a second run only checks that everything is there.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
stamp=.venv/.usfad-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ requirements/constraints.txt -nt "$stamp" ]; then
    .venv/bin/python -m pip install --quiet -c requirements/constraints.txt -e ".[all]"
    touch "$stamp"
fi
