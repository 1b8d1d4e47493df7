"""What the step texts of labelled credit-eval rows hold: outcomes, labels, and how much responses vary.

    python benchmarks/credit_eval_text_stats.py --rows runs/ce_llm/rows_s0/rows.jsonl.gz,runs/ce_llm/rows_s1/...

Prints one markdown table: rows, episodes, success rate, groups with both outcomes (the only ones where SCPO and
GiGPO credit anything), good-step share, invalid share, and for rows with `response_text` the share of responses
that are exactly the tagged action (`<action>ACTION</action>`: nothing else written) and the distinct
observation + response texts against distinct observation + action texts.
"""

from __future__ import annotations

import argparse

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", required=True, help="rows.jsonl.gz file(s) of credit-eval runs, comma-separated")
    args = parser.parse_args()

    from verl_agent_ext.credit_eval.cli import read_row_files

    rows = read_row_files(args.rows.split(","))
    success = {traj: bool(won) for traj, won in zip(rows["traj_uid"], rows["episode_success"], strict=True)}
    mixed = sum(len({success[t] for t in set(rows["traj_uid"][rows["uid"] == uid])}) == 2 for uid in set(rows["uid"]))
    stats = {
        "rows": len(rows["uid"]),
        "episodes": len(success),
        "success rate": f"{np.mean(list(success.values())):.3f}",
        "groups with both outcomes": f"{mixed} of {len(set(rows['uid']))}",
        "good steps": f"{rows['good'].mean():.3f}",
        "invalid steps": f"{1 - rows['is_action_valid'].astype(bool).mean():.3f}",
    }
    if "response_text" in rows:
        responses, actions, observations = rows["response_text"], rows["action_text"], rows["anchor_obs"]
        bare = np.mean([text == f"<action>{action}</action>" for text, action in zip(responses, actions, strict=True)])
        stats["responses = <action>ACTION</action>"] = f"{bare:.3f}"
        with_response = len(set(zip(observations, responses, strict=True)))
        with_action = len(set(zip(observations, actions, strict=True)))
        stats["distinct obs + response / obs + action"] = f"{with_response} / {with_action}"
    print("| statistic | value |\n|---|---:|")
    for name, value in stats.items():
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
