"""`verl-agent-ext prepare-data`: parquet rows that verl's own RLHFDataset loads and hands to the agent loop."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from verl_agent_ext.agent import AGENT_LOOP_NAME
from verl_agent_ext.cli import main


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """(output folder, printed text) of one prepare-data run on generated games (no ALFWORLD_DATA)."""
    out = tmp_path_factory.mktemp("alfworld-data")
    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(printed):
        patch.delenv("ALFWORLD_DATA", raising=False)
        argv = ["prepare-data", "--env", "alfworld", "--out", str(out), "--per-type", "1", "--train-size", "4"]
        assert main(argv) == 0
    return out, printed.getvalue()


@pytest.fixture(scope="module")
def alfworld_data(prepared):
    return prepared[0]


def test_generated_alfworld_rows(alfworld_data):
    train = pd.read_parquet(alfworld_data / "train.parquet")
    val = pd.read_parquet(alfworld_data / "val.parquet")
    assert len(train) == 4 and len(val) == 6  # one generated game per task type
    assert set(train.agent_name) == {AGENT_LOOP_NAME} and set(train.env_name) == {"alfworld"}
    assert set(train.split) == {"train"} and set(val.split) == {"eval_out_of_distribution"}
    assert set(train.data_source) == {"alfworld"}
    assert set(val.data_source) == {f"alfworld/{task_type}" for task_type in val.task_type}
    assert len(set(val.task_type)) == 6


def test_output_says_where_the_tasks_come_from(prepared):
    assert "source: generated ALFWorld games" in prepared[1]
    assert "4 tasks of split train" in prepared[1]


def test_verl_dataset_hands_the_task_to_the_agent_loop(alfworld_data, tokenizer):
    from verl.utils.dataset.rl_dataset import RLHFDataset

    config = OmegaConf.create({"max_prompt_length": 2048, "filter_overlong_prompts": True, "return_raw_chat": True})
    dataset = RLHFDataset(str(alfworld_data / "train.parquet"), tokenizer, config)
    row = dataset[0]
    assert row["agent_name"] == AGENT_LOOP_NAME
    assert row["env_name"] == "alfworld" and (Path(row["task_id"]) / "game.tw-pddl").is_file()
    assert row["raw_prompt"][0]["role"] == "user"


def test_unknown_val_split_is_refused(tmp_path, capsys):
    assert main(["prepare-data", "--env", "alfworld", "--out", str(tmp_path / "d"), "--val-split", "valid_seen"]) == 2
    assert not (tmp_path / "d").exists()  # a failed command leaves no empty --out behind
    assert "eval_out_of_distribution" in capsys.readouterr().err


def test_rows_of_one_task_type_solvable_within_a_step_budget(prepared, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("ALFWORLD_DATA", raising=False)
    argv = ["prepare-data", "--env", "alfworld", "--out", str(tmp_path), "--per-type", "1"]  # the fixture's games
    assert main([*argv, "--task-types", "pick_and_place_simple", "--solvable-within", "50"]) == 0
    train, val = (pd.read_parquet(tmp_path / f"{name}.parquet") for name in ("train", "val"))
    assert set(train.task_type) == set(val.task_type) == {"pick_and_place_simple"} and len(train) == 1
    assert "training tasks the searcher wins within 50 steps" in capsys.readouterr().out
    assert main([*argv, "--solvable-within", "1"]) == 2  # no game is won in one step
    assert "no training task is left" in capsys.readouterr().err


def test_webshop_refuses_alfworld_filters(tmp_path, capsys):
    assert main(["prepare-data", "--env", "webshop", "--out", str(tmp_path), "--solvable-within", "8"]) == 2
    assert "ALFWorld" in capsys.readouterr().err


@pytest.mark.parametrize("flag, value", [("--train-size", "-1"), ("--val-size", "0")])
def test_sizes_below_one_are_refused(tmp_path, capsys, flag, value):  # issue 25 finding 9
    out = tmp_path / "data"
    assert main(["prepare-data", "--env", "webshop", "--out", str(out), flag, value]) == 2
    assert f"error: {flag} must be at least 1" in capsys.readouterr().err
    assert not out.exists()
