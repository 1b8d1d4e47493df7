"""3SPO's state-score table survives checkpoints: verl's checkpoint callback saves it into `global_step_N` and,
when the trainer is built, restores it from the checkpoint verl resumes from; train-local's files likewise."""

from __future__ import annotations

import numpy as np
import pytest
from omegaconf import OmegaConf

from verl_agent_ext.agent.state_score_store import (
    STATE_FILE,
    load_state,
    reset_local_stores,
    run_score_store,
    save_state,
    state_score_store,
)
from verl_agent_ext.credit.config import sspo_config_from
from verl_agent_ext.credit.state_scores import state_keys
from verl_agent_ext.verl_plugin.sspo import CALLBACK_CLASS, SSPOCheckpointCallback

KEYS = state_keys(["kitchen", "fridge", "table"])


@pytest.fixture(autouse=True)
def fresh_store():
    reset_local_stores()
    yield
    reset_local_stores()


def trainer_config(folder, resume_mode: str = "auto"):
    return OmegaConf.create(
        {
            "algorithm": {"adv_estimator": "sspo", "sspo": {"alpha": 2.0}},
            "trainer": {
                "default_local_dir": str(folder),
                "resume_mode": resume_mode,
                "resume_from_path": None,
                "checkpoint_callback_class": CALLBACK_CLASS,
            },
        }
    )


def test_verl_callback_saves_and_restores_the_table(tmp_path):
    config = trainer_config(tmp_path)
    store = run_score_store("sspo", config.algorithm)
    store.update([([KEYS[0], KEYS[1]], True), ([KEYS[0], KEYS[2]], False)])
    expected = store.snapshot().scores(KEYS)
    callback = SSPOCheckpointCallback(config)  # nothing to resume yet
    step_dir = tmp_path / "global_step_3"
    step_dir.mkdir()
    callback.on_save(trainer=None, global_step=3, checkpoint_dir=str(step_dir))
    (tmp_path / "latest_checkpointed_iteration.txt").write_text("3")
    assert (step_dir / STATE_FILE).is_file()

    run_score_store("sspo", config.algorithm)  # a restarted run starts empty ...
    assert state_score_store(sspo_config_from(config.algorithm)).snapshot().t == 1
    SSPOCheckpointCallback(config)  # ... and the callback restores what verl resumes from
    restored = state_score_store(sspo_config_from(config.algorithm)).snapshot()
    assert restored.t == 3
    np.testing.assert_array_equal(restored.scores(KEYS), expected)

    run_score_store("sspo", config.algorithm)
    SSPOCheckpointCallback(trainer_config(tmp_path, resume_mode="disable"))  # no resume: stays empty
    assert state_score_store(sspo_config_from(config.algorithm)).snapshot().t == 1


def test_state_file_round_trip_and_absent_file(tmp_path):
    config = sspo_config_from({"sspo": {"alpha": 3.0}})
    store = run_score_store("sspo", config)
    store.update([([KEYS[1]], True)] * 3)
    save_state(store.state_dict(), tmp_path)
    state = store.state_dict()
    run_score_store("sspo", config)
    assert load_state(store, tmp_path) and store.snapshot().t == 4
    np.testing.assert_array_equal(store.state_dict()["n_tot"], state["n_tot"])
    assert not load_state(store, tmp_path / "missing")
    assert run_score_store("grpo", config) is None
