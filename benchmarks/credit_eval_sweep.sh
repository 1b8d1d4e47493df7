#!/usr/bin/env bash
# The credit-eval sweep behind docs/credit.md ("Credit quality against an oracle"): choose SCPO's and GiGPO's
# settings on seeds 0-4, then report the chosen ones on held-out seeds 5-9. Prints the markdown tables.
#   bash benchmarks/credit_eval_sweep.sh [OUT]        (default OUT=runs/credit_eval)
# Labels are cached (see docs): a rerun only replays the environments. pick_two_obj_and_place is left out: its
# shortest-plan searches take seconds per state on 2 cores (docs/credit.md, "Cost"). Every SCPO setting is spelled
# out (matcher, theta, alpha, alpha_scale, reference), so the sweep does not depend on the current defaults.
set -euo pipefail
OUT=${1:-runs/credit_eval}
TYPES=look_at_obj_in_light,pick_and_place_simple,pick_clean_then_place_in_recep,pick_cool_then_place_in_recep,pick_heat_then_place_in_recep
ROLLOUTS=(--epsilon 0.25,0.5 --tasks 5 --group-size 8 --max-steps 15 --task-types "$TYPES")
OLD=scpo:scpo.matcher=embedding:scpo.theta=0.85:scpo.alpha_scale=reward:scpo.alpha=0.5:scpo.reference=longest
S=scpo:scpo.alpha_scale=success_return            # alpha as a fraction of the group's success return
L=$S:scpo.reference=longest                       # + the paper's reference
A=$S:scpo.reference=all                           # + every success as reference
EMB=scpo.matcher=embedding

# 1. GiGPO modes, then SCPO one setting at a time around alpha 0.5 (the defaults before this sweep: embedding,
#    theta 0.85, longest reference, alpha 0.5 in reward units = 0.05 of ALFWorld's success reward 10)
SWEEP=grpo,gigpo,gigpo:gigpo.mode=mean_std_norm,gigpo:gigpo.similarity=embedding,$OLD
for alpha in 0.2 0.5 1 2; do SWEEP+=,$L:$EMB:scpo.theta=0.85:scpo.alpha=$alpha; done
for theta in 0.75 0.8 0.9 0.95 0.97; do SWEEP+=,$L:$EMB:scpo.alpha=0.5:scpo.theta=$theta; done
for option in step_text=action step_text=obs mode=mean_std_norm backend=onnx_int8 segments=separate; do
  SWEEP+=,$L:$EMB:scpo.theta=0.85:scpo.alpha=0.5:scpo.$option
done
SWEEP+=,$S:$EMB:scpo.theta=0.85:scpo.alpha=0.5:scpo.reference=shortest,$A:$EMB:scpo.theta=0.85:scpo.alpha=0.5
SWEEP+=,$L:$EMB:scpo.alpha=0.5:scpo.segments=separate:scpo.theta=0.92
for theta in 0.9 0.95 0.98 0.99 0.995; do SWEEP+=,$L:scpo.matcher=static:scpo.alpha=0.5:scpo.theta=$theta; done
SWEEP+=,$L:scpo.matcher=exact:scpo.alpha=0.5,$L:scpo.matcher=difflib:scpo.theta=0.8:scpo.alpha=0.5
OLD_R=scpo:scpo.alpha_scale=reward:scpo.alpha=0.5:scpo.reference=longest   # the fast options at the old defaults
SWEEP+=,$OLD_R:scpo.matcher=static:scpo.theta=0.98,$OLD_R:$EMB:scpo.theta=0.85:scpo.segments=separate
SWEEP+=,$OLD_R:$EMB:scpo.theta=0.85:scpo.backend=onnx_int8
# 2. combinations of the winners of step 1
SWEEP+=,$L:$EMB:scpo.alpha=1:scpo.theta=0.9,$L:$EMB:scpo.alpha=1:scpo.theta=0.95
SWEEP+=,$A:$EMB:scpo.alpha=0.5:scpo.theta=0.95,$A:$EMB:scpo.alpha=1:scpo.theta=0.95
for theta in 0.9 0.95; do SWEEP+=,$L:$EMB:scpo.alpha=0.5:scpo.step_text=action:scpo.theta=$theta; done
SWEEP+=,$A:$EMB:scpo.alpha=0.5:scpo.step_text=action:scpo.theta=0.85
SWEEP+=,$L:scpo.matcher=exact:scpo.alpha=1,$A:scpo.matcher=exact:scpo.alpha=0.5
SWEEP+=,$L:scpo.matcher=exact:scpo.alpha=0.5:scpo.step_text=action
SWEEP+=,$L:scpo.matcher=static:scpo.alpha=1:scpo.theta=0.99
for theta in 0.9 0.98; do SWEEP+=,$L:scpo.matcher=static:scpo.alpha=0.5:scpo.step_text=action:scpo.theta=$theta; done
SWEEP+=,$L:$EMB:scpo.alpha=0.5:scpo.theta=0.95:scpo.backend=onnx_int8
SWEEP+=,$L:$EMB:scpo.alpha=0.5:scpo.theta=0.95:scpo.segments=separate
SWEEP+=,$L:$EMB:scpo.alpha=0.5:scpo.theta=0.95:scpo.segments=separate:scpo.backend=onnx_int8
# 3. the fast options at the chosen settings (alpha 1 of a success, every success as reference)
SWEEP+=,$A:scpo.matcher=exact:scpo.alpha=1
for theta in 0.98 0.99 0.995; do SWEEP+=,$A:scpo.matcher=static:scpo.alpha=1:scpo.theta=$theta; done
SWEEP+=,$A:$EMB:scpo.alpha=1:scpo.theta=0.95:scpo.backend=onnx_int8
SWEEP+=,$A:$EMB:scpo.alpha=1:scpo.theta=0.95:scpo.backend=onnx_int8:scpo.mode=mean_std_norm

# held-out seeds: the baselines, the old SCPO defaults, and the chosen settings with each matcher
HELDOUT=grpo,gigpo,gigpo:gigpo.mode=mean_std_norm,$OLD,$A:$EMB:scpo.theta=0.95:scpo.alpha=1
HELDOUT+=,$A:$EMB:scpo.theta=0.95:scpo.alpha=1:scpo.backend=onnx_int8,$A:scpo.matcher=static:scpo.theta=0.995:scpo.alpha=1
HELDOUT+=,$A:scpo.matcher=exact:scpo.alpha=1

# rollouts + labels once per seed set (rows.jsonl.gz), then every setting on the saved rows
verl-agent-ext credit-eval --estimators grpo --seed 0,1,2,3,4 "${ROLLOUTS[@]}" --bootstrap 0 --out "$OUT/sweep_rows"
verl-agent-ext credit-eval --rows "$OUT/sweep_rows/rows.jsonl.gz" --estimators "$SWEEP" --bootstrap 100 --out "$OUT/sweep"
verl-agent-ext credit-eval --estimators grpo --seed 5,6,7,8,9 "${ROLLOUTS[@]}" --bootstrap 0 --out "$OUT/heldout_rows"
verl-agent-ext credit-eval --rows "$OUT/heldout_rows/rows.jsonl.gz" --estimators "$HELDOUT" --bootstrap 200 \
    --out "$OUT/heldout"
