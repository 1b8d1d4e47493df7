#!/usr/bin/env bash
# Shared launcher of examples/run_*.sh: runs recipe/scpo/main_scpo.py (verl's V1 trainer) with the overrides given.
#   --dry-run          print the command, compose and validate the configuration with the plugin loaded, print the
#                      resource plan (memory per GPU by phase, CPUs; WARNING lines for what will not fit) against
#                      VAE_NODE=GPUSxMEMORY[GB][,CPUScpu] (e.g. 2x80GB,32cpu) or this machine's GPUs; start
#                      nothing; exits non-zero if the configuration is not valid.
#   --cpu              verl's trainer on this machine's CPU (VERL_PLATFORM=cpu, the `transformers` rollout backend)
#                      with the small CPU profile (verl_agent_ext/cpu_profile.py): SmolLM2-135M, 2 tasks x
#                      group 4, <= 5 steps, 2 iterations; model and tasks are prepared in the cache on first use.
#                      Overrides given after it still apply (e.g. --cpu trainer.total_training_steps=3).
#   --warm-start=NAME  with --cpu on ALFWorld: start from a `verl-agent-ext warm-start` adapter (a shipped one's name,
#                      e.g. alfworld-pick-smollm2-135m, or a folder): its merged weights, prompt settings and games.
#   --                 separates a script's own overrides (before) from the user's (after): the CPU profile goes between.
#   VAE_PRINT_ONLY=1   print the command and exit (no Python).
#   PYTHON=...         interpreter (default: the active one, else the checkout's .venv, else python3).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -z "${VIRTUAL_ENV:-}" && -x "$ROOT/.venv/bin/python" ]]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi

dry_run=0
cpu=0
warm_start=()
script_overrides=()
overrides=()
for arg in "$@"; do
  case "$arg" in
    --dry-run) dry_run=1 ;;
    --cpu) cpu=1 ;;
    --warm-start=*) warm_start=(--init-adapter "${arg#--warm-start=}") ;;
    --) script_overrides+=("${overrides[@]}"); overrides=() ;;
    *) overrides+=("$arg") ;;
  esac
done

profile=()
if (( ${#warm_start[@]} )) && (( ! cpu )); then
  echo "launch.sh: --warm-start needs --cpu (on GPUs, set actor_rollout_ref.model.lora_adapter_path instead)" >&2
  exit 2
fi
if (( cpu )); then
  env_name=alfworld
  for arg in "${script_overrides[@]}" "${overrides[@]}"; do
    if [[ "$arg" == env.name=* ]]; then env_name="${arg#env.name=}"; fi
  done
  prepare=()
  if (( dry_run )) || [[ "${VAE_PRINT_ONLY:-0}" == "1" ]]; then prepare=(--no-prepare); fi
  mapfile -t profile < <(PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -m verl_agent_ext.cpu_profile \
    --env "$env_name" "${prepare[@]}" "${warm_start[@]}")
  (( ${#profile[@]} )) || { echo "launch.sh: the CPU profile could not be prepared" >&2; exit 1; }
  export VERL_PLATFORM=cpu
  # Ray starts its workers at niceness 15; on a laptop they are the job, not background work.
  export RAY_worker_niceness="${RAY_worker_niceness:-0}"
  # Ray's memory monitor kills workers when the whole machine is 95% full, whoever uses the memory.
  export RAY_memory_monitor_refresh_ms="${RAY_memory_monitor_refresh_ms:-0}"
fi

# The script's own overrides, then the CPU profile, then the user's (the last value of a key wins).
command=("$PYTHON" "$ROOT/recipe/scpo/main_scpo.py" "${script_overrides[@]}" "${profile[@]}" "${overrides[@]}")
printf 'command:'; if (( cpu )); then printf ' VERL_PLATFORM=cpu'; fi; printf ' %q' "${command[@]}"; printf '\n'
if [[ "${VAE_PRINT_ONLY:-0}" == "1" ]]; then exit 0; fi
if (( dry_run )); then exec "${command[@]}" --dry-run; fi
exec "${command[@]}"
