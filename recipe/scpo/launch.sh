#!/usr/bin/env bash
# Shared launcher of examples/run_*.sh: runs recipe/scpo/main_scpo.py (verl's V1 trainer) with the overrides given.
#   --dry-run          print the command, compose and validate the configuration with the plugin loaded, start
#                      nothing; exits non-zero if the configuration is not valid.
#   VAE_PRINT_ONLY=1   print the command and exit (no Python).
#   PYTHON=...         interpreter (default: the active one, else the checkout's .venv, else python3).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -z "${VIRTUAL_ENV:-}" && -x "$ROOT/.venv/bin/python" ]]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi

dry_run=0
overrides=()
for arg in "$@"; do
  if [[ "$arg" == "--dry-run" ]]; then dry_run=1; else overrides+=("$arg"); fi
done

command=("$PYTHON" "$ROOT/recipe/scpo/main_scpo.py" "${overrides[@]}")
printf 'command:'; printf ' %q' "${command[@]}"; printf '\n'
if [[ "${VAE_PRINT_ONLY:-0}" == "1" ]]; then exit 0; fi
if (( dry_run )); then exec "${command[@]}" --dry-run; fi
exec "${command[@]}"
