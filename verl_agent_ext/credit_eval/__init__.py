"""`verl-agent-ext credit-eval`: how well each advantage estimator credits the right steps, against an oracle.

A tool layer above `envs/` and `credit/` (like `play`), below `cli.py`:

- `oracle`: the planner's remaining plan length d(s) from any ALFWorld state, cached per (game, action prefix);
- `rollouts`: epsilon-expert behaviour (the planner expert mixed with random admissible actions), groups of
  rollouts per task, every step labelled good (d decreases) or bad, with the estimator contract's columns;
- `estimators`: any estimator in verl's registry, configured through the training config path;
- `metrics`: AUC (pooled and within group), positive shares, Spearman, bootstrap intervals over tasks;
- `report`: markdown table, credit_eval.json, credit_eval.png; `cli`: the subcommand.
"""
