#!/usr/bin/env bash
# credit-eval on real LLM rollouts (docs/credit.md, "LLM responses: the shipped SmolLM2 warm start"): labelled rows
# of the shipped warm start at temperature 1.0 (2 games x 8 episodes of <= 15 steps per seed, seeds on disjoint
# games), then AUC against theta for every matcher and both step texts on TUNE_SEEDS (0-4), then the chosen settings
# on the held-out HELD_SEEDS (5-9; 200 bootstrap resamples over tasks).
#   bash benchmarks/credit_eval_llm.sh [OUT]        (default OUT=runs/ce_llm; the rows: 4-5 min per seed on an idle core)
#   TUNE_SEEDS="0 1 2" HELD_SEEDS="3 4 9" bash benchmarks/credit_eval_llm.sh      (the split docs/credit.md reports)
set -euo pipefail
OUT=${1:-runs/ce_llm}
TUNE_SEEDS=${TUNE_SEEDS:-0 1 2 3 4}
HELD_SEEDS=${HELD_SEEDS:-5 6 7 8 9}
POLICY=(--policy alfworld-pick-smollm2-135m --temperature 1.0 --tasks 2 --group-size 8 --max-steps 15
        --solvable-within 15 --response-length 16 --num-threads 1)
A=scpo:scpo.alpha_scale=success_return:scpo.alpha=1:scpo.reference=all   # the SCPO defaults, spelled out

# 1. labelled rows, one process per seed (a seed's rows survive an interrupted run; rerun skips finished seeds)
for seed in $TUNE_SEEDS $HELD_SEEDS; do
  [ -f "$OUT/rows_s$seed/rows.jsonl.gz" ] && continue
  verl-agent-ext credit-eval "${POLICY[@]}" --seed "$seed" --estimators grpo --bootstrap 0 --out "$OUT/rows_s$seed"
done
rows() { local s files=(); for s in "$@"; do files+=("$OUT/rows_s$s/rows.jsonl.gz"); done; (IFS=,; echo "${files[*]}"); }
TUNE=$(rows $TUNE_SEEDS)
HELD=$(rows $HELD_SEEDS)

# 2. AUC against theta on the tuning seeds (choosing), per step text
for text in obs_action obs_response; do
  python benchmarks/credit_eval_theta.py --rows "$TUNE" --step-text "$text" --out "$OUT/theta_$text" \
      --matchers gigpo,exact,static_sif,embedding --title "SmolLM2 warm start, T=1.0, seeds $TUNE_SEEDS ($text)"
done

# 3. the chosen settings on the held-out seeds: theta 0.99 for both embedding matchers (the best of step 2's grid:
# their curves rise toward exact matching), and MiniLM's default 0.95 for reference
held() {
  local s=":scpo.step_text=$1"
  echo "$A:scpo.matcher=exact$s,$A:scpo.matcher=static:scpo.static_variant=sif:scpo.theta=0.99$s,$A:scpo.matcher=embedding:scpo.theta=0.99$s,$A:scpo.matcher=embedding:scpo.theta=0.95$s"
}
verl-agent-ext credit-eval --rows "$HELD" --estimators "grpo,gigpo,$(held obs_action),$(held obs_response)" \
    --bootstrap 200 --out "$OUT/held"
# paired differences against exact matching on the same held-out rows, per step text; what the texts hold
for text in obs_action obs_response; do
  python benchmarks/credit_eval_paired.py --rows "$HELD" --baseline "$A:scpo.matcher=exact:scpo.step_text=$text" \
      --estimators "$(held "$text" | cut -d, -f2-),gigpo"
done
python benchmarks/credit_eval_text_stats.py --rows "$TUNE,$HELD"
