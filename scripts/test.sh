#!/usr/bin/env bash
# The README's test command: set up .venv with the test extras, lint, then run the whole test suite.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh tests/credit -x`).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck disable=SC1091
source scripts/setup_env.sh test
echo "[test] ruff"
ruff check .
echo "[test] pytest"
python -m pytest "${@:-tests}"
