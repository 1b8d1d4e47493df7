"""WebShop end to end on the verl side: `prepare-data --env webshop` rows through verl's RLHFDataset, then the
task of such a row played by the env agent loop through the env pool, with a real tokenizer and a server that
answers with the WebShop expert's actions as real token ids."""

from __future__ import annotations

import asyncio

import pandas as pd
import pytest
from omegaconf import OmegaConf

from verl_agent_ext.agent import AGENT_LOOP_NAME, STEP_METADATA_KEYS
from verl_agent_ext.agent.env_agent_loop import build_agent_loop
from verl_agent_ext.cli import main
from verl_agent_ext.envs.pool import EnvPool
from verl_agent_ext.envs.registry import make_env, make_policy
from verl_agent_ext.envs.webshop.tasks import list_tasks


@pytest.fixture(scope="module")
def webshop_rows(tmp_path_factory):
    out = tmp_path_factory.mktemp("webshop-data")
    assert main(["prepare-data", "--env", "webshop", "--out", str(out), "--train-size", "3", "--val-size", "2"]) == 0
    return out


class ExpertServer:
    """Answers each step with the WebShop expert's action, tracked on a shadow env of the same task."""

    def __init__(self, tokenizer, task):
        self.tokenizer = tokenizer
        self.env = make_env("webshop")
        self.observation = self.env.reset(task)
        self.expert = make_policy("webshop", "expert", self.env)
        self.actions: list[str] = []

    async def generate(self, request_id, *, prompt_ids, sampling_params, **kwargs):
        from verl.workers.rollout.replica import TokenOutput

        action = self.expert.act(self.observation)
        self.actions.append(action)
        self.observation = self.env.step(action).observation
        token_ids = self.tokenizer.encode(f"<action>{action}</action>", add_special_tokens=False)
        token_ids.append(self.tokenizer.eos_token_id)
        return TokenOutput(token_ids=token_ids, log_probs=[-0.1] * len(token_ids), extra_fields={})


def test_prepare_data_rows_load_in_verls_dataset(webshop_rows, tokenizer):
    from verl.utils.dataset.rl_dataset import RLHFDataset

    train = pd.read_parquet(webshop_rows / "train.parquet")
    assert len(train) == 3 and set(train.env_name) == {"webshop"} and set(train.agent_name) == {AGENT_LOOP_NAME}
    config = OmegaConf.create({"max_prompt_length": 2048, "filter_overlong_prompts": True, "return_raw_chat": True})
    row = RLHFDataset(str(webshop_rows / "train.parquet"), tokenizer, config)[0]
    assert row["agent_name"] == AGENT_LOOP_NAME and row["env_name"] == "webshop"
    assert row["task_id"] == train.task_id[0]


def test_a_prepared_task_is_won_through_the_pool_and_the_agent_loop(webshop_rows, tokenizer, loop_config):
    row = pd.read_parquet(webshop_rows / "train.parquet").iloc[0]
    task = next(task for task in list_tasks("train") if task.task_id == row.task_id)
    pool = EnvPool("webshop", num_envs=1, backend="inprocess")
    try:
        server = ExpertServer(tokenizer, task)
        config = loop_config(prompt_length=2048, response_length=64, name="webshop", max_steps=15)
        loop = build_agent_loop(config, server, tokenizer, env_pools=[pool])
        fields = {"env_name": row.env_name, "task_id": row.task_id, "task_type": row.task_type, "split": row.split}
        outputs = asyncio.run(loop.run({"temperature": 1.0}, **fields))
    finally:
        pool.close()
    assert [output.extra_fields["action_text"] for output in outputs] == server.actions
    assert server.actions[0].startswith("search[") and server.actions[-1] == "click[buy now]"
    assert all(output.extra_fields["is_action_valid"] for output in outputs)
    assert all(output.extra_fields["episode_success"] is True and output.reward_score == 10.0 for output in outputs)
    assert all(set(STEP_METADATA_KEYS) <= set(output.extra_fields) for output in outputs)
