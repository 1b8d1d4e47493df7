"""The supervised warm start, shortened: expert-data -> warm-start -> a PEFT adapter train-local starts from.

The commands of docs/cpu_training.md's warm start, with 2 demonstrations and 4 steps instead of the full data and
step count.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from verl_agent_ext.cli import main
from verl_agent_ext.local import warm_start as warm_start_module
from verl_agent_ext.local.config import LocalTrainConfig
from verl_agent_ext.local.trainer import LocalTrainer
from verl_agent_ext.local.warm_start import WarmStartConfig, cache_key, warm_start
from verl_agent_ext.policy.model import resolve_adapter


@pytest.fixture(scope="module")
def demonstrations(tmp_path_factory):
    out = tmp_path_factory.mktemp("expert")
    argv = ["expert-data", "--env", "alfworld", "--out", str(out), "--episodes", "2", "--val-episodes", "0"]
    shipped = ["--policy", "searcher", "--history-length", "0", "--max-actions", "40"]  # the shipped adapter's data
    assert main([*argv, "--task-types", "pick_and_place_simple", "--per-type", "3", *shipped]) == 0
    return out


@pytest.fixture(scope="module")
def short_run(demonstrations, tmp_path_factory):
    """(config, first result, second result) of the shortened warm start; the cache lives in a temp folder."""
    cache = tmp_path_factory.mktemp("adapters")
    config = WarmStartConfig(data=str(demonstrations), steps=4, batch_size=4, lr=1e-3, eval_episodes=0, num_threads=2)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(warm_start_module, "adapter_cache_dir", lambda c: cache / cache_key(c))
        first = warm_start(config, log=lambda line: None)
        second = warm_start(config, log=lambda line: None)
    return config, first, second


def test_sft_loss_falls_and_the_adapter_is_a_plain_peft_folder(short_run):
    config, first, _ = short_run
    record = first.record
    assert not first.cached and record["train_rows"] >= 4
    assert len(record["sft_loss_curve"]) == config.steps
    assert record["sft_loss_last"] < record["sft_loss_first"]
    adapter_config = json.loads((first.adapter_dir / "adapter_config.json").read_text())
    assert adapter_config["peft_type"] == "LORA" and adapter_config["r"] == config.lora_rank
    assert (first.adapter_dir / "adapter_model.safetensors").is_file()


def test_second_run_reuses_the_cached_adapter(short_run):
    config, first, second = short_run
    assert second.cached and second.adapter_dir == first.adapter_dir and second.record == first.record
    assert cache_key(config) != cache_key(WarmStartConfig(**{**config.__dict__, "steps": 5}))


def test_train_local_starts_from_the_adapter(short_run, tmp_path):
    _, first, _ = short_run
    saved = load_file(first.adapter_dir / "adapter_model.safetensors")
    config = LocalTrainConfig(
        out_dir=str(tmp_path),
        init_adapter=str(first.adapter_dir),
        groups_per_iter=2,
        group_size=1,
        max_steps=2,
        games_per_type=1,
        response_length=16,
        num_threads=2,
        resume=False,
    )
    trainer = LocalTrainer(config, log=lambda line: None)
    try:
        trainable = {n: p for n, p in trainer.model.named_parameters() if p.requires_grad}
        assert len(trainable) == len(saved) > 0
        for name, tensor in saved.items():  # peft drops the adapter name in the file
            loaded = trainable[name.replace(".weight", ".default.weight")]
            assert torch.equal(loaded.detach().cpu(), tensor.to(loaded.dtype))
        metrics = trainer.evaluate(trainer.tasks[:2], temperature=0.0)
    finally:
        trainer.close()
    assert metrics["eval/episodes"] == 2 and 0.0 <= metrics["eval/success_rate"] <= 1.0
    assert 1 <= metrics["eval/episode_length"] <= 2


def test_a_folder_that_is_no_adapter_says_how_to_make_one(tmp_path):
    with pytest.raises(FileNotFoundError, match="warm-start"):
        resolve_adapter(str(tmp_path))


def test_the_shipped_adapter_loads_by_name_and_records_its_command():
    path = resolve_adapter("alfworld-pick-smollm2-135m")
    record = json.loads((path / "warm_start.json").read_text())
    data = record["data_info"]["settings"]
    assert data["policy"] == "searcher" and data["task_types"] == "pick_and_place_simple"
    documented = {"episodes": 24, "per_type": 24, "seed": 0, "history_length": 0, "max_actions": 40}
    assert {key: data[key] for key in documented} == documented
    settings = record["settings"]
    assert (settings["steps"], settings["batch_size"], settings["lr"], settings["seed"]) == (120, 8, 2e-3, 0)
    assert (settings["eval_episodes"], settings["eval_max_steps"]) == (24, 8)  # the quickstart's step limit
    assert record["heldout"]["eval/episodes"] == 24 and record["heldout"]["eval/success_rate"] > 0
    # the quickstart starts from it with the prompt settings it was trained with
    script = (Path(__file__).parents[2] / "examples" / "quickstart_cpu.sh").read_text()
    for flag in ("--init-adapter alfworld-pick-smollm2-135m", "--history-length 0", "--max-actions 40"):
        assert flag in script


def test_eval_plays_a_shipped_adapter_by_name_with_its_demonstrations_prompt_settings():
    import argparse

    from verl_agent_ext.local.eval_cli import policy_config

    args = argparse.Namespace(
        env="alfworld", num_threads=1, episodes=24, max_steps=8, task_types="pick_and_place_simple", games_dir=None
    )
    config, checkpoint = policy_config("alfworld-pick-smollm2-135m", args, "/tmp/unused")
    assert checkpoint is None and config.init_adapter.endswith("alfworld-pick-smollm2-135m")
    assert (config.history_length, config.max_actions) == (0, 40)  # the adapter's, not train-local's defaults
    assert config.games_per_type >= 24  # enough generated games of the one task type for 24 episodes
