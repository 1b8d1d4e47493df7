"""`verl-agent-ext credit-eval`: how well each advantage estimator credits the right steps, against an oracle.

A tool layer above `envs/` and `credit/` (like `play`), below `cli.py`:

- `oracle`: the planner's remaining plan length d(s) from any ALFWorld state, cached per (game, action prefix);
- `rollouts`: epsilon-expert behaviour (the planner expert mixed with random admissible actions), groups of
  rollouts per task, every step labelled good (d decreases) or bad, with the estimator contract's columns;
- `paraphrase`: ALFWorld texts rewritten per trajectory in seeded styles (`--paraphrase`), labels unchanged;
- `webshop`: WebShop rollouts with varied search queries, labelled by the expert's remaining path (`--env webshop`);
- `estimators`: any estimator in verl's registry, configured through the training config path;
- `metrics`: AUC (pooled and within group), positive shares, Spearman, bootstrap intervals over tasks;
- `report`: markdown table, credit_eval.json, credit_eval.png; `cli`: the subcommand.
"""
