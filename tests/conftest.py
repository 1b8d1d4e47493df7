"""Shared test configuration: offline model hubs, the reference fixtures (inside the repository), and a guard that
the suite reads nothing beside the clone."""

import os
import sys
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
FIXTURES_DIR = Path(__file__).resolve().parent / "fixtures"
TEMP_DIR = os.path.abspath(tempfile.gettempdir())


def _beside_the_clone(path: str) -> bool:
    """True for a path in the clone's parent folder outside the clone: always `../shared`; other siblings unless
    hidden (~/.cache, ~/.local, a .venv: the user's environment) or inside the temp folder (pytest's tmp_path when
    the clone itself sits in /tmp)."""
    resolved = os.path.abspath(path)
    parent = str(PROJECT_ROOT.parent)
    if not resolved.startswith(parent + os.sep) or resolved.startswith(str(PROJECT_ROOT) + os.sep):
        return False
    first = resolved[len(parent) + 1 :].split(os.sep, 1)[0]
    if first == "shared":
        return True
    return not first.startswith(".") and not resolved.startswith(TEMP_DIR + os.sep)


def _refuse_reads_beside_the_clone(event: str, args: tuple) -> None:
    if event == "open" and isinstance(args[0], (str, os.PathLike)) and _beside_the_clone(os.fspath(args[0])):
        raise PermissionError(f"the test suite must not read outside the repository: {args[0]}")


sys.addaudithook(_refuse_reads_beside_the_clone)


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """`tests/fixtures`: reference cases computed with the published implementations (data, kept in the repository)."""
    return FIXTURES_DIR


@pytest.fixture(scope="module")
def transfer_queue():
    """A real Ray + TransferQueue (controller and one storage unit) for this module."""
    import ray
    import transfer_queue as tq
    from omegaconf import OmegaConf

    started_here = not ray.is_initialized()
    if started_here:
        # logical CPUs: the TransferQueue controller and its storage unit reserve one each
        ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    elif ray.available_resources().get("CPU", 0) < 2:
        pytest.fail("a Ray instance left running by an earlier test has < 2 free CPUs for TransferQueue's actors")
    tq.init(OmegaConf.create({"backend": {"SimpleStorage": {"num_data_storage_units": 1}}}))
    yield tq
    tq.close()
    if started_here:
        ray.shutdown()


@pytest.fixture
def store_sessions(transfer_queue):
    """`store_sessions({(uid, session): [AgentLoopOutput, ...]}, validate, global_steps, **row) -> keys`: each session's
    outputs stored by verl's own `AgentLoopWorkerTQ._agent_loop_postprocess` (row keys `{uid}_{session}_{i}`)."""
    import asyncio

    from verl.trainer.ppo.v1.agent_loop_tq import AgentLoopWorkerTQ

    worker = object.__new__(AgentLoopWorkerTQ.__ray_actor_class__)
    worker.processor, worker.reward_loop_worker_handles, worker.distillation_enabled = None, None, False

    def store(sessions: dict, validate: bool = False, global_steps: int = 1, **row) -> list[str]:
        async def put_all() -> list[str]:
            keys = []
            for (uid, session), outputs in sessions.items():
                await worker._agent_loop_postprocess(
                    outputs, validate, uid=uid, session_id=session, global_steps=global_steps, **row
                )
                keys.extend(f"{uid}_{session}_{index}" for index in range(len(outputs)))
            return keys

        return asyncio.run(put_all())

    return store


@pytest.fixture
def v1_trainer():
    """`v1_trainer(adv_estimator, parameter_sync_step=1, **algorithm)` -> verl's V1 trainer object, not started,
    with the config keys `PPOTrainer.step` and `_compute_advantage` read (groups of 2; an `env` section, so the
    plugin's hook runs whatever the estimator)."""
    from omegaconf import OmegaConf
    from verl.trainer.ppo.v1 import PPOTrainerSync

    def build(adv_estimator: str, parameter_sync_step: int = 1, **algorithm):
        trainer = object.__new__(PPOTrainerSync)
        trainer.config = OmegaConf.create(
            {
                "algorithm": {
                    "adv_estimator": adv_estimator,
                    "gamma": 0.95,
                    "lam": 1.0,
                    "use_kl_in_reward": False,
                    "norm_adv_by_std_in_grpo": True,
                    "gigpo": {"mode": "mean_norm"},
                    "scpo": {"matcher": "exact"},
                    **algorithm,
                },
                "actor_rollout_ref": {"rollout": {"n": 2}},
                "data": {"train_batch_size": parameter_sync_step},
                "env": {"name": "alfworld"},
            }
        )
        trainer.parameter_sync_step = parameter_sync_step
        return trainer

    return build
