"""Step rows from the agent loop's outputs, as the tensors and metadata verl's estimators and losses take.

Each `AgentLoopOutput` (one environment step) becomes one training row: its prompt ids, response ids and the
`extra_fields` contract keys. `StepRows` holds them padded to (rows, max_response_len) like verl's batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from verl.experimental.agent_loop.agent_loop import AgentLoopOutput

from verl_agent_ext.agent import STEP_METADATA_KEYS
from verl_agent_ext.credit.batch import RESPONSE_TEXT_KEY


@dataclass
class StepRows:
    """A batch of step samples.

    prompts: list of prompt id lists (rows of different lengths).
    responses: (rows, R) response ids, right-padded with 0.
    response_mask: (rows, R) 1 on generated tokens.
    token_level_rewards: (rows, R) the episode return on the last response token (verl's rm_scores).
    non_tensor_batch: (rows,) object arrays: `uid` (the group) + the agent loop's contract keys + `task_type`
        (+ `response_text` when the agent loop recorded it).
    """

    prompts: list[list[int]]
    responses: torch.Tensor
    response_mask: torch.Tensor
    token_level_rewards: torch.Tensor
    non_tensor_batch: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.prompts)


def step_rows(outputs: Sequence[AgentLoopOutput], uids: Sequence[str]) -> StepRows:
    """Stack step outputs; `uids[i]` is the group id of `outputs[i]` (one per task played `group_size` times)."""
    if not outputs:
        raise ValueError("no step outputs to train on")
    width = max(len(output.response_ids) for output in outputs)
    responses = torch.zeros((len(outputs), width), dtype=torch.long)
    mask = torch.zeros((len(outputs), width), dtype=torch.long)
    rewards = torch.zeros((len(outputs), width), dtype=torch.float32)
    for row, output in enumerate(outputs):
        length = len(output.response_ids)
        responses[row, :length] = torch.tensor(output.response_ids, dtype=torch.long)
        mask[row, :length] = torch.tensor(output.response_mask, dtype=torch.long)
        if length:
            rewards[row, length - 1] = float(output.reward_score or 0.0)
    keys = (*STEP_METADATA_KEYS, "task_type")
    if all(RESPONSE_TEXT_KEY in output.extra_fields for output in outputs):
        keys += (RESPONSE_TEXT_KEY,)  # optional: SCPO's step_text=obs_response reads it
    non_tensor = {key: _object_array([output.extra_fields[key] for output in outputs]) for key in keys}
    non_tensor["uid"] = _object_array(list(uids))
    return StepRows(
        prompts=[list(output.prompt_ids) for output in outputs],
        responses=responses,
        response_mask=mask,
        token_level_rewards=rewards,
        non_tensor_batch=non_tensor,
    )


def _object_array(values: list) -> np.ndarray:
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array
