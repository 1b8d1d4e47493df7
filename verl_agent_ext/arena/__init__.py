"""`verl-agent-ext arena`: does better credit train better agents? Sample efficiency of every estimator, on a CPU.

A tool layer beside `credit_eval/`, above `envs/`, `agent/` (3SPO's branching rollout) and `credit/`:

- `policy`: the light policy, a softmax over the candidate actions scored from hashed text features;
- `envs`: training / held-out tasks of each environment and the warm start's demonstrator;
- `warm_start`: behaviour cloning on cached demonstrator episodes;
- `rollout`: episodes and groups as rows with the agent loop's `non_tensor_batch` fields;
- `train`: one (estimator, seed) run: rollout, verl's estimator, verl's actor loss, held-out evaluation;
- `stats`: bootstrap intervals over seeds, paired differences, AUC, episodes to a success level;
- `report`: arena.json, arena.png and the markdown table; `cli`: the subcommand.
"""
