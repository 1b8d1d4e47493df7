#!/usr/bin/env bash
# The semantic-matching study behind docs/credit.md ("Does semantic matching earn its place?"): labelled rows per text
# kind (ALFWorld templates, the same rows paraphrased, WebShop), AUC against theta for every matcher on seeds 0-4,
# then the chosen settings on held-out seeds 5-9 (200 bootstrap resamples over tasks).
#   bash benchmarks/credit_eval_semantic.sh [OUT]        (default OUT=runs/ce)
set -euo pipefail
OUT=${1:-runs/ce}
TYPES=look_at_obj_in_light,pick_and_place_simple,pick_clean_then_place_in_recep,pick_cool_then_place_in_recep,pick_heat_then_place_in_recep
ALF=(--estimators grpo --epsilon 0.5 --tasks 5 --group-size 8 --max-steps 15 --task-types "$TYPES" --bootstrap 0)
WS=(--env webshop --estimators grpo --epsilon 0.5 --tasks 10 --group-size 8 --max-steps 15 --bootstrap 0)
A=scpo:scpo.alpha_scale=success_return:scpo.alpha=1:scpo.reference=all   # the SCPO defaults, spelled out
# held-out settings: every matcher at its chosen theta (static: both variants)
held() {
  local text=$1
  echo "gigpo,$A:scpo.matcher=exact:scpo.step_text=$text,$A:scpo.matcher=static:scpo.static_variant=plain:scpo.theta=0.995:scpo.step_text=$text,$A:scpo.matcher=static:scpo.static_variant=sif:scpo.theta=0.99:scpo.step_text=$text,$A:scpo.matcher=embedding:scpo.theta=0.95:scpo.step_text=$text"
}

# 1. labelled rows (the label cache makes reruns cheap)
verl-agent-ext credit-eval "${ALF[@]}" --seed 0,1,2,3,4 --out "$OUT/alf_tune_rows"
verl-agent-ext credit-eval "${ALF[@]}" --seed 5,6,7,8,9 --out "$OUT/alf_held_rows"
verl-agent-ext credit-eval "${WS[@]}" --seed 0,1,2,3,4 --out "$OUT/ws_tune_rows"
verl-agent-ext credit-eval "${WS[@]}" --seed 5,6,7,8,9 --out "$OUT/ws_held_rows"

# 2. AUC against theta on seeds 0-4 (choosing)
python benchmarks/credit_eval_theta.py --rows "$OUT/alf_tune_rows/rows.jsonl.gz" --out "$OUT/theta_alf_tune" \
    --matchers gigpo,exact,static_plain,static_pca,static_sif
python benchmarks/credit_eval_theta.py --rows "$OUT/alf_tune_rows/rows.jsonl.gz" --paraphrase --out "$OUT/theta_para_tune" \
    --matchers gigpo,exact,static_plain,static_pca,static_sif,embedding,difflib
python benchmarks/credit_eval_theta.py --rows "$OUT/ws_tune_rows/rows.jsonl.gz" --step-text action \
    --out "$OUT/theta_ws_tune_action" --matchers gigpo,exact,static_plain,static_sif,embedding,difflib
# (WebShop's observation + action texts are long result pages: the bi-encoder sweep was left out for time)
python benchmarks/credit_eval_theta.py --rows "$OUT/ws_tune_rows/rows.jsonl.gz" --out "$OUT/theta_ws_tune" \
    --matchers gigpo,exact,static_plain,static_sif

# 3. the chosen settings on held-out seeds 5-9
verl-agent-ext credit-eval --rows "$OUT/alf_held_rows/rows.jsonl.gz" --estimators "$(held obs_action)" \
    --bootstrap 200 --out "$OUT/held_alf"
verl-agent-ext credit-eval --rows "$OUT/alf_held_rows/rows.jsonl.gz" --paraphrase --estimators "$(held obs_action)" \
    --bootstrap 200 --out "$OUT/held_para"
verl-agent-ext credit-eval --rows "$OUT/ws_held_rows/rows.jsonl.gz" --estimators "$(held obs_action),$(held action | cut -d, -f2-)" \
    --bootstrap 200 --out "$OUT/held_ws"
