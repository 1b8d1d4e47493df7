"""Scores of step-text pairs under each matcher: can a threshold tell a paraphrase from a different step?

    python benchmarks/paraphrase_pair_scores.py --rows runs/ce/alf_tune_rows/rows.jsonl.gz

From the distinct (observation, action) steps of labelled credit-eval rows, 300 draws (seed 0) of four kinds of
pairs, each rendered in the paraphrase styles of `credit_eval/paraphrase.py` ("observation\\naction" text):
the same step in two different styles; in one style, the same observation with another action; another
observation with the same action; an unrelated step. Prints the 10th / 50th / 90th percentile of each matcher's
score per kind. When "same step, other style" overlaps "same observation, other action", no theta credits
paraphrases without also crediting other actions taken in the same state.
"""

from __future__ import annotations

import argparse
import random

import numpy as np

from verl_agent_ext.credit_eval.paraphrase import STYLES, rewrite_action, rewrite_observation
from verl_agent_ext.credit_eval.rollouts import read_rows
from verl_agent_ext.semantic import EmbeddingMatcher, StaticEmbeddingMatcher


def render(observation: str, action: str, style: int) -> str:
    return rewrite_observation(observation, style, random.Random(1)) + "\n" + rewrite_action(action, style)


def pairs(rows: dict, draws: int, seed: int) -> dict[str, list[tuple[str, str]]]:
    rng = random.Random(seed)
    steps = list(dict.fromkeys(zip(rows["anchor_obs"], rows["action_text"], strict=True)))
    by_obs: dict[str, list[str]] = {}
    by_action: dict[str, list[str]] = {}
    for observation, action in steps:
        by_obs.setdefault(observation, []).append(action)
        by_action.setdefault(action, []).append(observation)
    kinds: dict[str, list[tuple[str, str]]] = {
        "same step, other style": [],
        "same style, same observation, other action": [],
        "same style, other observation, same action": [],
        "same style, unrelated step": [],
    }
    for _ in range(draws):
        (o, a), (s1, s2), s = rng.choice(steps), rng.sample(range(len(STYLES)), 2), rng.randrange(len(STYLES))
        kinds["same step, other style"].append((render(o, a, s1), render(o, a, s2)))
        if len(by_obs[o]) > 1:
            b = rng.choice([x for x in by_obs[o] if x != a])
            kinds["same style, same observation, other action"].append((render(o, a, s), render(o, b, s)))
        if len(by_action[a]) > 1:
            p = rng.choice([x for x in by_action[a] if x != o])
            kinds["same style, other observation, same action"].append((render(o, a, s), render(p, a, s)))
        o2, b2 = rng.choice(steps)
        kinds["same style, unrelated step"].append((render(o, a, s), render(o2, b2, s)))
    return kinds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", required=True)
    parser.add_argument("--draws", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    kinds = pairs(read_rows(args.rows), args.draws, args.seed)
    matchers = {
        "embedding (MiniLM)": EmbeddingMatcher(threads=1),
        "static sif": StaticEmbeddingMatcher(threads=1),
        "static plain": StaticEmbeddingMatcher(variant="plain", threads=1),
    }
    print("| matcher | pair kind | pairs | p10 | p50 | p90 |\n|---|---|---:|---:|---:|---:|")
    for name, matcher in matchers.items():
        for kind, texts in kinds.items():
            scores = np.asarray([matcher.similarity([x], [y])[0, 0] for x, y in texts])
            p10, p50, p90 = np.percentile(scores, [10, 50, 90])
            print(f"| {name} | {kind} | {len(texts)} | {p10:.3f} | {p50:.3f} | {p90:.3f} |")


if __name__ == "__main__":
    main()
