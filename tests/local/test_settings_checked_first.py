"""Settings are checked before anything runs (issue 25 findings 2, 3, 9): one `error:` line, exit 2, no --out left."""

import re

import pytest

from verl_agent_ext.cli import main
from verl_agent_ext.local.config import LocalTrainConfig


@pytest.mark.parametrize(
    "setting, message",
    [
        ("+algorithm.scpo.theta=5", "scpo.theta=5.0 out of range"),
        ("+algorithm.scpo.theta=high", "scpo.theta='high' must be a finite number"),
        ("+algorithm.scpo.thetaa=0.5", r"unknown key\(s\) \['thetaa'\] in algorithm.scpo"),
        ("+algorithm.gigpo.mode=bogus", "gigpo.mode='bogus' is not a valid option"),
        ("algorithm.nosuch=1", "Could not override 'algorithm.nosuch'"),
        ("algorithm.gamma", "algorithm.gamma from --gamma"),
        ("actor_rollout_ref.actor.ppo_epochs=abc", r"ppo_epochs \(--ppo-epochs\) must be int, got 'abc'"),
        ("actor_rollout_ref.actor.ppo_mini_batch_size=3", "--groups-per-iter x --group-size"),
    ],
)
def test_train_local_refuses_bad_settings_before_starting(tmp_path, capsys, setting, message):
    out = tmp_path / "run"
    assert main(["train-local", "--out", str(out), "--set", setting]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[-1].startswith("error: ") and "Traceback" not in err
    assert re.search(message, lines[-1])
    assert not out.exists()


def test_a_set_of_a_mirrored_key_sets_the_option():
    config = LocalTrainConfig(verl_overrides=["actor_rollout_ref.actor.ppo_epochs=3", "++algorithm.gamma=0.5"])
    assert config.ppo_epochs == 3 and config.gamma == 0.5 and config.verl_overrides == []
    assert LocalTrainConfig(verl_overrides=["+env.response_prefix=''"]).response_prefix == ""


@pytest.mark.parametrize(
    "estimators, message",
    [("empg:empg.k=-1", r"empg.k=-1.0 out of range"), ("istar", "cannot run in credit-eval")],
)
def test_credit_eval_refuses_bad_estimators_before_any_rollout(tmp_path, capsys, estimators, message):
    out = tmp_path / "eval"
    assert main(["credit-eval", "--out", str(out), "--estimators", estimators]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and message.split("\\")[0].split("(")[0] in err
    assert not out.exists()


def test_ctrl_c_during_start_up_is_one_line(tmp_path, capsys, monkeypatch):
    def interrupted(config):
        raise KeyboardInterrupt

    monkeypatch.setattr("verl_agent_ext.local.config.check_settings", interrupted)
    assert main(["train-local", "--out", str(tmp_path / "run")]) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err and "interrupted" in err
