"""Hypothesis strategies: random but well-formed step batches (groups of trajectories with ALFWorld-like texts)."""

import numpy as np
from hypothesis import strategies as st

from verl_agent_ext.credit import StepBatch

OBSERVATIONS = ["You are in the middle of a room.", "The fridge 1 is closed.", "Nothing happens.", "", "café ☕ 1"]
ACTIONS = ["go to fridge 1", "open fridge 1", "look", "", "prendre la pomme ☕"]


@st.composite
def step_batches(draw, max_groups: int = 3, max_trajectories: int = 4, max_steps: int = 5) -> StepBatch:
    """A batch in shuffled row order; a trajectory succeeds with reward 10 at its last step."""
    rows = []
    for g in range(draw(st.integers(1, max_groups))):
        for t in range(draw(st.integers(1, max_trajectories))):
            length = draw(st.integers(1, max_steps))
            won = draw(st.booleans())
            for step in range(length):
                rows.append(
                    dict(
                        uid=f"g{g}",
                        traj_uid=f"g{g}-t{t}",
                        step_index=step,
                        step_reward=10.0 if won and step == length - 1 else 0.0,
                        is_action_valid=draw(st.booleans()) or draw(st.booleans()),
                        episode_return=10.0 if won else 0.0,
                        episode_success=won,
                        anchor_obs=draw(st.sampled_from(OBSERVATIONS)),
                        action_text=draw(st.sampled_from(ACTIONS)),
                    )
                )
    order = draw(st.permutations(range(len(rows))))
    rows = [rows[i] for i in order]
    return StepBatch.from_columns(**{key: [row[key] for row in rows] for key in rows[0]})


def permuted(batch: StepBatch, seed: int) -> tuple[StepBatch, np.ndarray]:
    """The batch with its rows shuffled, and the permutation used."""
    perm = np.random.default_rng(seed).permutation(len(batch))
    return batch.take(perm), perm
