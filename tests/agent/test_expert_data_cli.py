"""`verl-agent-ext expert-data`: expert steps as verl multi-turn SFT rows, with the agent loop's exact prompts."""

from __future__ import annotations

import asyncio
import json

import pandas as pd
import pytest
from omegaconf import OmegaConf

from verl_agent_ext.agent.env_agent_loop import build_agent_loop
from verl_agent_ext.agent.expert_data_cli import read_info
from verl_agent_ext.cli import main
from verl_agent_ext.envs.alfworld.prompt import COMPACT_TEMPLATE, PromptConfig
from verl_agent_ext.envs.pool import EnvPool
from verl_agent_ext.envs.text import extract_action, parse_tagged_action


def expert_data(tmp_path_factory, env: str, *extra: str):
    out = tmp_path_factory.mktemp(f"{env}-expert")
    argv = ["expert-data", "--env", env, "--out", str(out), "--episodes", "2", "--val-episodes", "0", *extra]
    assert main(argv) == 0
    return out


@pytest.fixture(scope="module")
def alfworld_data(tmp_path_factory):
    # the cached generated games the other ALFWorld tests use (10 per type, seed 0)
    return expert_data(tmp_path_factory, "alfworld", "--task-types", "pick_and_place_simple", "--per-type", "10")


def test_rows_answer_in_the_parsers_format(alfworld_data):
    rows = pd.read_parquet(alfworld_data / "train.parquet")
    jsonl = [json.loads(line) for line in (alfworld_data / "train.jsonl").read_text().splitlines()]
    info = read_info(alfworld_data)
    assert len(rows) == len(jsonl) == info["splits"]["train"]["rows"] >= 4
    assert info["splits"]["train"]["won"] == 2 and info["settings"]["prompt_template"] == COMPACT_TEMPLATE
    assert set(rows.task_type) == {"pick_and_place_simple"} and set(rows.env_name) == {"alfworld"}
    for row in jsonl:
        user, answer = row["messages"]
        assert user["role"] == "user" and answer["role"] == "assistant"
        assert user["content"].startswith("Task: ")
        assert answer["content"] == f"<action>{row['action']}</action>"
        assert parse_tagged_action(answer["content"], (row["action"],)).valid
    # steps of an episode are in order, each episode ends with the winning step
    for _, episode in rows.groupby("episode"):
        assert list(episode.step_index) == list(range(len(episode)))


def test_verl_multiturn_sft_dataset_reads_the_rows(alfworld_data, tokenizer):
    from verl.utils.dataset.multiturn_sft_dataset import MultiTurnSFTDataset

    config = OmegaConf.create({"max_length": 1024, "truncation": "error", "pad_mode": "right"})
    dataset = MultiTurnSFTDataset(str(alfworld_data / "train.parquet"), tokenizer, config)
    rows = pd.read_parquet(alfworld_data / "train.parquet")
    assert len(dataset) == len(rows)
    for index in (0, len(dataset) - 1):
        item = dataset[index]
        trained = item["input_ids"][item["loss_mask"].bool()]
        action = rows.action.iloc[index]
        assert tokenizer.decode(trained).startswith(f"<action>{action}</action>")  # then the end-of-turn token
        assert "Task: " in tokenizer.decode(item["input_ids"][~item["loss_mask"].bool()])


class ReplayServer:
    """Answers the agent loop's steps with recorded actions (after the prefilled '<action>'), recording prompts."""

    def __init__(self, tokenizer, actions: list[str]):
        self.tokenizer, self.actions, self.prompts = tokenizer, list(actions), []

    async def generate(self, request_id, *, prompt_ids, sampling_params, **kwargs):
        from verl.workers.rollout.replica import TokenOutput

        self.prompts.append(list(prompt_ids))
        text = self.actions.pop(0) + "</action>"
        token_ids = self.tokenizer.encode(text, add_special_tokens=False) + [self.tokenizer.eos_token_id]
        return TokenOutput(token_ids=token_ids, log_probs=[-0.1] * len(token_ids))


def test_prompts_are_the_ones_the_agent_loop_renders(alfworld_data, tokenizer):
    rows = pd.read_parquet(alfworld_data / "train.parquet")
    episode = rows[rows.episode == rows.episode.iloc[0]]
    settings = read_info(alfworld_data)["settings"]
    prompt = PromptConfig(
        history_turns=settings["history_length"],
        max_actions=settings["max_actions"],
        template=settings["prompt_template"],
    )
    config = OmegaConf.create(
        {
            "actor_rollout_ref": {"rollout": {"prompt_length": 2048, "response_length": 32}},
            "data": {},
            "env": {
                "name": "alfworld",
                "max_steps": 50,
                "history_length": settings["history_length"],
                "response_prefix": "<action>",
            },
        }
    )
    server = ReplayServer(tokenizer, list(episode.action))
    pool = EnvPool("alfworld", num_envs=1, backend="inprocess", env_kwargs={"max_steps": 50, "prompt": prompt})
    try:
        loop = build_agent_loop(config, server, tokenizer, env_pools=[pool])
        task = {"env_name": "alfworld", "task_id": episode.task_id.iloc[0], "task_type": "pick_and_place_simple"}
        outputs = asyncio.run(loop.run({"temperature": 1.0}, split="train", **task))
    finally:
        pool.close()
    assert outputs[-1].extra_fields["episode_success"] and len(outputs) == len(episode)
    prefix = tokenizer.encode("<action>", add_special_tokens=False)
    for rendered, messages in zip(server.prompts, episode.messages, strict=True):
        user = [dict(messages[0])]
        expected = tokenizer.apply_chat_template(user, add_generation_prompt=True, tokenize=True, return_dict=False)
        assert rendered == list(expected) + prefix


def test_webshop_expert_data(tmp_path_factory):
    out = expert_data(tmp_path_factory, "webshop")
    rows = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    assert read_info(out)["splits"]["train"]["won"] == 2
    assert rows[0]["action"].startswith("search[") and rows[-1]["action"] == "click[buy now]"
    assert all(extract_action(row["messages"][1]["content"])[0] == row["action"] for row in rows)
    assert {"env_name", "task_id", "task_type", "split"} <= set(rows[0])  # the task, for replaying the episode
