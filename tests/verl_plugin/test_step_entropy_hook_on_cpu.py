"""`step_entropy` through verl's real V1 code path: AgentLoopWorkerTQ stores per-step rows in a real TransferQueue,
verl's own `PPOTrainer._compute_old_log_prob` writes the token `entropy` there (the actor worker is replaced by a
writer of known per-token values, in the engine's nested prompt+response layout), and the patched
`_compute_advantage` hands each row's mean response entropy to `empg`. The advantages must equal `empg` called
directly with the entropies computed by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from test_step_metadata_hook_on_cpu import ROWS, agent_loop_outputs, put_rollouts

from verl_agent_ext.estimators import compute_step_advantage


def token_entropy(row: int, token: int) -> float:
    """The entropy the fake actor reports for response token `token` of row `row` (nats)."""
    return 0.2 + 0.3 * ((row * 7) % 5) + 0.05 * token


class EntropyWritingActor:
    """Stands in for `actor_rollout_wg`: writes `log_probs` and `entropy` per token the way verl's engine does,
    one value per prompt+response position, response token j at position prompt_len - 1 + j."""

    def __init__(self, tq):
        self.tq = tq
        self.calls = []

    def compute_log_prob(self, batch):
        from verl.utils.tensordict_utils import list_of_dict_to_tensordict

        self.calls.append(dict(batch.extra_info))
        data = self.tq.kv_batch_get(
            keys=batch.keys, partition_id=batch.partition_id, select_fields=["prompts", "responses"]
        )
        fields = []
        for row, (prompt, response) in enumerate(
            zip(data["prompts"].unbind(), data["responses"].unbind(), strict=True)
        ):
            entropy = torch.zeros(len(prompt) + len(response))
            entropy[len(prompt) - 1 : len(prompt) - 1 + len(response)] = torch.tensor(
                [token_entropy(row, j) for j in range(len(response))]
            )
            fields.append({"entropy": entropy, "log_probs": -entropy})
        self.tq.kv_batch_put(
            keys=batch.keys, partition_id=batch.partition_id, fields=list_of_dict_to_tensordict(fields)
        )
        return batch


def trainer_config():
    return OmegaConf.create(
        {
            "algorithm": {
                "adv_estimator": "empg",
                "gamma": 0.95,
                "lam": 1.0,
                "use_kl_in_reward": False,
                "norm_adv_by_std_in_grpo": True,
                "gigpo": {"invalid_action_penalty": 0.1},
                "empg": {"zeta": 0.1},
            },
            "actor_rollout_ref": {
                "rollout": {"n": 3, "temperature": 0.7, "calculate_log_probs": False},
                "actor": {"loss_agg_mode": "token-mean", "loss_scale_factor": None},
            },
            "env": {"name": "alfworld"},
        }
    )


def run_old_log_prob_and_advantage(tq, keys, tags):
    """verl's _compute_old_log_prob, then the plugin-patched _compute_advantage; returns advantages and metrics."""
    from transfer_queue import KVBatchMeta
    from verl.trainer.ppo.v1 import PPOTrainerSync

    trainer = object.__new__(PPOTrainerSync)
    trainer.config = trainer_config()
    trainer.actor_rollout_wg = EntropyWritingActor(tq)
    metrics: dict[str, float] = {}
    batch = KVBatchMeta(keys=keys, tags=tags, partition_id="train")
    batch = trainer._compute_old_log_prob(batch, metrics)
    assert trainer.actor_rollout_wg.calls[0]["calculate_entropy"] is True
    assert trainer.actor_rollout_wg.calls[0]["temperature"] == 0.7  # entropy at the rollout temperature
    trainer._compute_advantage(batch, metrics)
    stored = tq.kv_batch_get(keys=keys, partition_id="train", select_fields=["advantages"])
    return list(stored["advantages"].unbind()), metrics


def direct_empg(step_entropy: np.ndarray) -> torch.Tensor:
    """`empg` called directly on the ROWS with the given step entropies: one scalar per row."""
    sessions = agent_loop_outputs()
    outputs = [output for session in sessions.values() for output in session]
    uids = np.asarray([uid for (uid, _), session in sessions.items() for _ in session], dtype=object)
    width = max(len(output.response_ids) for output in outputs)
    rewards, mask = torch.zeros(len(outputs), width), torch.zeros(len(outputs), width)
    for row, output in enumerate(outputs):
        mask[row, : len(output.response_ids)] = 1
        rewards[row, len(output.response_ids) - 1] = output.reward_score
    keys = ("traj_uid", "step_index", "anchor_obs", "action_text", "step_reward", "is_action_valid", "episode_success")
    non_tensor_batch = {key: np.asarray([o.extra_fields[key] for o in outputs], dtype=object) for key in keys}
    non_tensor_batch["uid"] = uids
    non_tensor_batch["step_entropy"] = step_entropy
    advantages, _, _ = compute_step_advantage("empg", rewards, mask, uids, trainer_config().algorithm, non_tensor_batch)
    return advantages[:, 0]


def hand_step_entropy() -> np.ndarray:
    """Mean over each row's response tokens of the values the fake actor wrote (rows in ROWS order)."""
    lengths = [len(output.response_ids) for session in agent_loop_outputs().values() for output in session]
    return np.asarray([np.mean([token_entropy(row, j) for j in range(n)]) for row, n in enumerate(lengths)])


def test_old_log_prob_entropy_reaches_empg(transfer_queue, store_sessions):
    keys = put_rollouts(store_sessions)
    hooked, metrics = run_old_log_prob_and_advantage(transfer_queue, keys, [{} for _ in keys])
    entropy = hand_step_entropy()
    assert len(set(np.round(entropy, 6))) > 2  # the rows really differ
    expected = direct_empg(entropy)
    for row, advantage in enumerate(hooked):
        torch.testing.assert_close(advantage, torch.full_like(advantage, float(expected[row])))
    # the entropy changed the advantages: uniform entropies give a different result
    assert not torch.allclose(expected, direct_empg(np.full(len(ROWS), 1.0)))
    assert metrics["credit/empg/step_entropy_max"] == pytest.approx(entropy.max())
    assert "actor/entropy" in metrics  # verl's own old-log-prob metric
    transfer_queue.kv_clear(keys=keys, partition_id="train")


def test_padding_rows_stay_out_of_empg_statistics(transfer_queue, store_sessions):
    from transfer_queue import KVBatchMeta
    from verl.trainer.ppo.padding_utils import upsample_batch_to_divisible_size

    keys = put_rollouts(store_sessions)
    batch = KVBatchMeta(keys=keys, tags=[{} for _ in keys], partition_id="train")
    padded = upsample_batch_to_divisible_size(batch, batch_multiple=4, eos_token_id=2)
    assert len(padded) == 12
    hooked, _ = run_old_log_prob_and_advantage(transfer_queue, padded.keys, padded.tags)
    expected = direct_empg(hand_step_entropy())
    for row in range(len(keys)):
        torch.testing.assert_close(hooked[row], torch.full_like(hooked[row], float(expected[row])))
    assert all(float(advantage.abs().sum()) == 0.0 for advantage in hooked[len(keys) :])
    transfer_queue.kv_clear(keys=padded.keys, partition_id="train")
