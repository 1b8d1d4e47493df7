"""iStar's implicit PRM in verl's V1 trainer: its own worker group (verl's `TrainingWorker`), started by the plugin
when `algorithm.adv_estimator=istar`, scored and updated before the advantage, checkpointed with the run.

Per iteration, inside `PPOTrainer._compute_advantage` (after `old_log_probs`, before the estimator):
  1. `prm_wg.infer_batch(batch)`: log pi_phi of every row's response (the PRM before its update);
  2. on the driver: r = beta * sum_k (log pi_phi - log pi_old), the pair loss over the whole batch and its
     per-row gradient c_i = dL/dr_i (`credit.istar.score_prm_batch`); the pairs never split across workers;
  3. `prm_wg.train_mini_batch(batch)`: one optimizer step on the surrogate sum_i c_i * beta * sum_k log pi_phi
     (`prm_surrogate_loss`, the token weights c_i * beta travel in TransferQueue), whose gradient at the current
     phi is the pair loss's; skipped when `freeze_prm` or when no group has a success and a failure;
  4. the normalised r joins the step metadata as `prm_step_reward`, which the `istar` estimator reads.
The worker group shares the actor's resource pool (verl's pools hold up to 3 worker processes per GPU) and reads
its model, engine and checkpoint settings from `actor_rollout_ref`, with `algorithm.istar.prm_*` overrides. With
`prm_offload` (the default) its parameters and AdamW states live in host memory except during steps 1 and 3, so the
rollout engine and the actor keep the GPU memory they have without iStar (docs/istar.md: the per-GPU budget).
Checkpoints go to `<global_step_N>/istar_prm` beside the actor's and are loaded back on resume.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
from collections.abc import Callable
from copy import deepcopy
from enum import Enum
from types import ModuleType
from typing import Any

import numpy as np
import torch

from verl_agent_ext.credit.istar import PRM_STEP_REWARD_KEY, IStarConfig, istar_config_from, score_prm_batch
from verl_agent_ext.verl_plugin.post_import import when_imported

logger = logging.getLogger(__name__)

V1_TRAINER_MODULE = "verl.trainer.ppo.v1.trainer_base"
PRM_TOKEN_WEIGHT = "istar_prm_token_weight"
"""TransferQueue field: c_i * beta on the response tokens of row i (nested, like `advantages`)."""
PATCH_MARK = "__verl_agent_ext_istar__"


class IStarRole(Enum):
    """verl's `Role` is an Enum with members, which Python cannot subclass: a role of our own, same protocol."""

    PRM = "istar_prm"

    def __str__(self) -> str:
        return self.value


def uses_istar(config: Any) -> bool:
    """True when the run's advantage estimator is istar."""
    estimator = (config.get("algorithm") or {}).get("adv_estimator")
    return str(getattr(estimator, "value", estimator)) == "istar"


# --------------------------------------------------------------------------------------------------------------
# The worker: config and loss
# --------------------------------------------------------------------------------------------------------------


def prm_worker_config(config: Any):
    """verl's `TrainingWorkerConfig` of the PRM: the actor's model/engine/optimizer/checkpoint settings, with the
    model path and AdamW settings of `algorithm.istar` (prm_model_path, prm_lr, prm_weight_decay, prm_grad_clip).
    """
    from omegaconf import OmegaConf
    from verl.utils.config import omega_conf_to_dataclass
    from verl.workers.engine_workers import TrainingWorkerConfig

    istar = istar_config_from(config.algorithm)
    section = OmegaConf.create(OmegaConf.to_container(config.actor_rollout_ref, resolve=True))
    if istar.prm_model_path is not None:
        section.model.path = istar.prm_model_path
    optim = section.actor.optim
    if istar.prm_lr is not None:
        optim.lr = istar.prm_lr
    optim.weight_decay = istar.prm_weight_decay
    optim.clip_grad = istar.prm_grad_clip
    engine_section = section.actor.get("fsdp_config")
    if engine_section is not None:  # offload flags are frozen in verl's engine dataclass: set them before it is built
        # prm_offload: verl's engine moves parameters / AdamW to the GPU on entering train or eval mode, back after
        engine_section.param_offload = engine_section.optimizer_offload = istar.prm_offload
    model_config = omega_conf_to_dataclass(section.model)
    actor = omega_conf_to_dataclass(section.actor)
    worker = TrainingWorkerConfig(
        model_type="language_model",
        model_config=model_config,
        engine_config=deepcopy(actor.engine),
        optimizer_config=actor.optim,
        checkpoint_config=actor.checkpoint,
    )
    rollout = section.rollout
    engine = worker.engine_config
    engine.use_dynamic_bsz = section.actor.use_dynamic_bsz
    engine.infer_max_token_len_per_gpu = rollout.log_prob_max_token_len_per_gpu
    engine.infer_micro_batch_size_per_gpu = rollout.log_prob_micro_batch_size_per_gpu
    engine.max_token_len_per_gpu = section.actor.ppo_max_token_len_per_gpu
    engine.micro_batch_size_per_gpu = section.actor.ppo_micro_batch_size_per_gpu
    engine.use_remove_padding = section.model.get("use_remove_padding", False)
    return worker


def prm_surrogate_loss(config: IStarConfig, model_output: dict, data, dp_group=None) -> tuple[torch.Tensor, dict]:
    """verl loss function (`TrainingWorker.set_loss_fn`) of the PRM update, one micro-batch.

    loss = dp_size * sum_i sum_k w_ik * log pi_phi(y_ik), w_ik = c_i * beta on row i's response tokens
    (`PRM_TOKEN_WEIGHT`). Summed over micro-batches and averaged over data-parallel ranks (FSDP), its gradient
    is the pair loss's gradient over the whole batch. model_output["log_probs"]: nested (no padding).
    """
    from verl.workers.utils.padding import no_padding_2_padding

    log_prob = no_padding_2_padding(model_output["log_probs"], data)  # (b, R)
    fields = data.select(PRM_TOKEN_WEIGHT, "response_mask").to_padded_tensor()
    weight = fields[PRM_TOKEN_WEIGHT].to(log_prob.dtype)
    mask = fields["response_mask"].to(log_prob.dtype)
    surrogate = (weight * log_prob * mask).sum()
    return surrogate * data["dp_size"], {"istar/surrogate": surrogate.detach().item()}


# --------------------------------------------------------------------------------------------------------------
# The trainer side
# --------------------------------------------------------------------------------------------------------------


def start_prm_worker_group(trainer: Any) -> None:
    """Create, initialise and (on resume) restore the PRM worker group; sets `trainer.istar_prm_wg`."""
    import ray
    from verl.single_controller.ray import RayClassWithInitArgs, RayWorkerGroup
    from verl.trainer.ppo.utils import Role
    from verl.workers.engine_workers import TrainingWorker

    config = trainer.config
    istar = istar_config_from(config.algorithm)
    actor_role = next(
        role for role in (Role.Actor, Role.ActorRolloutRef, Role.ActorRollout) if role in trainer.role_worker_mapping
    )
    pool = trainer.resource_pool_manager.get_resource_pool(actor_role)
    worker_cls = RayClassWithInitArgs(cls=ray.remote(TrainingWorker), config=prm_worker_config(config))
    trainer.istar_prm_wg = RayWorkerGroup(
        resource_pool=pool, ray_cls_with_init=worker_cls, device_name=config.trainer.device
    )
    trainer.istar_prm_wg.reset()
    trainer.istar_prm_wg.set_loss_fn(functools.partial(prm_surrogate_loss, istar))
    if trainer.global_steps > 0:
        folder = prm_checkpoint_folder(config, trainer.global_steps)
        if not os.path.isdir(folder):
            raise FileNotFoundError(
                f"resuming an istar run from step {trainer.global_steps}, but its PRM checkpoint {folder} is missing"
            )
        trainer.istar_prm_wg.load_checkpoint(folder)


def prm_checkpoint_folder(config: Any, global_steps: int) -> str:
    """Where the PRM of step `global_steps` is saved: beside the actor, in verl's global_step folder."""
    return os.path.join(config.trainer.default_local_dir, f"global_step_{global_steps}", str(IStarRole.PRM))


def score_and_update_prm(trainer: Any, batch: Any, columns: dict[str, np.ndarray], metrics: dict) -> np.ndarray:
    """Steps 1-3 of the module docstring for one batch (KVBatchMeta); returns the (bs,) step rewards.

    columns: the step metadata of the batch's rows (traj_uid, episode_success, ...) from the plugin's hook.
    """
    import ray
    import transfer_queue as tq
    from tensordict import TensorDict
    from verl.workers.utils.padding import response_from_nested, response_to_nested

    config = trainer.config
    istar = istar_config_from(config.algorithm)
    temperature = config.actor_rollout_ref.rollout.temperature
    batch.extra_info.update({"compute_loss": False, "calculate_entropy": False, "temperature": temperature})
    ray.get(trainer.istar_prm_wg.infer_batch(batch).futures)
    fields = ["log_probs", "old_log_probs", "response_mask", "uid"]
    data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=fields)
    response_mask = data["response_mask"]
    prm_log_prob = response_from_nested(data["log_probs"], response_mask).to_padded_tensor(0.0)
    old_log_prob = data["old_log_probs"].to_padded_tensor(0.0)
    mask = response_mask.to_padded_tensor(0)
    raw = (istar.beta * ((prm_log_prob - old_log_prob) * mask).sum(-1)).double().cpu().numpy()
    active = np.asarray([not tag.get("is_padding", False) for tag in batch.tags])
    uid = np.asarray(data.pop("uid").tolist(), dtype=object)  # as verl's own _validate reads it
    success = np.asarray(columns["episode_success"], dtype=bool)
    scored = score_prm_batch(raw, uid, columns["traj_uid"], success, istar, active)
    metrics.update(scored.metrics)
    updated = scored.pairs > 0 and not istar.freeze_prm
    if updated:
        weight = torch.as_tensor(scored.weights * istar.beta, dtype=torch.float32)[:, None] * mask
        output = TensorDict({PRM_TOKEN_WEIGHT: response_to_nested(weight, response_mask)}, batch_size=len(batch))
        tq.kv_batch_put(keys=batch.keys, partition_id=batch.partition_id, fields=output)
        # the worker reads the fields its batch meta lists (all when None): add the token weights to them
        fields = None if batch.fields is None else list(dict.fromkeys([*batch.fields, PRM_TOKEN_WEIGHT]))
        prm_batch = dataclasses.replace(batch, fields=fields)
        prm_batch.extra_info.update(
            {"global_batch_size": len(batch), "mini_batch_size": len(batch), "epochs": 1, "temperature": temperature}
        )
        result = trainer.istar_prm_wg.train_mini_batch(prm_batch).get()
        # the worker's "loss" is the surrogate's value (sum_i c_i * beta * sum_k log pi_phi, which only its
        # gradient matters for), not the pair loss: istar/loss stays the driver's pair loss
        worker_keys = {"grad_norm": "istar/grad_norm", "lr": "istar/lr", "loss": "istar/surrogate_loss"}
        for key, values in result["metrics"].items():
            if key in worker_keys:
                metrics[worker_keys[key]] = float(np.mean(values))
    metrics["istar/updated"] = float(updated)
    return scored.rewards


patch_status = "not imported yet"
""""installed" once verl's V1 trainer is patched, else why not."""


def _patch_trainer(module: ModuleType) -> None:
    """Wrap PPOTrainer's _setup (start the PRM), _compute_advantage (score + update) and _save_checkpoint."""
    global patch_status
    trainer_cls = getattr(module, "PPOTrainer", None)
    if trainer_cls is None:
        patch_status = f"{module.__name__} has no PPOTrainer: verl's internals changed"
        return
    if getattr(trainer_cls._setup, PATCH_MARK, False):
        return
    if getattr(trainer_cls._compute_advantage, "__verl_agent_ext_patch__", False):
        patch_status = "the step-metadata hook was installed first: the PRM wrapper must be inside it"
        return
    trainer_cls._setup = _after(trainer_cls._setup, _start_if_istar)
    trainer_cls._save_checkpoint = _after(trainer_cls._save_checkpoint, _save_prm)
    trainer_cls._compute_advantage = _with_prm_rewards(trainer_cls._compute_advantage)
    patch_status = "installed"


def check_config(config: Any) -> None:
    """Raise at start-up when adv_estimator=istar cannot run: bad `algorithm.istar` keys or no trainer patch."""
    if not uses_istar(config):
        return
    istar_config_from(config.algorithm)
    import importlib

    importlib.import_module(V1_TRAINER_MODULE)  # installs the patch in this process
    if patch_status != "installed":
        raise RuntimeError(f"adv_estimator=istar needs the plugin's PRM worker patch of verl's trainer: {patch_status}")


def _start_if_istar(trainer: Any) -> None:
    if uses_istar(trainer.config):
        start_prm_worker_group(trainer)


def _after(original: Callable[..., Any], then: Callable[[Any], Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def wrapped(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = original(self, *args, **kwargs)
        then(self)
        return result

    setattr(wrapped, PATCH_MARK, True)
    return wrapped


def _save_prm(trainer: Any) -> None:
    if getattr(trainer, "istar_prm_wg", None) is None:
        return
    keep = trainer.config.trainer.get("max_actor_ckpt_to_keep", None)
    trainer.istar_prm_wg.save_checkpoint(
        prm_checkpoint_folder(trainer.config, trainer.global_steps), None, trainer.global_steps, max_ckpt_to_keep=keep
    )


def _with_prm_rewards(original: Callable[..., Any]) -> Callable[..., Any]:
    """Inside the step-metadata hook's context: add `prm_step_reward` to the metadata the estimator receives."""
    from verl_agent_ext.verl_plugin.advantage_patch import pending_step_metadata

    @functools.wraps(original)
    def _compute_advantage(self: Any, batch: Any, metrics: dict) -> Any:
        if getattr(self, "istar_prm_wg", None) is None:
            return original(self, batch, metrics)
        columns = pending_step_metadata()
        if columns is None:
            raise RuntimeError("adv_estimator=istar: the step-metadata hook did not run before the PRM")
        columns[PRM_STEP_REWARD_KEY] = score_and_update_prm(self, batch, columns, metrics)
        return original(self, batch, metrics)

    setattr(_compute_advantage, PATCH_MARK, True)
    return _compute_advantage


def install() -> None:
    """Patch verl's V1 trainer when (or if already) imported. Must run before the step-metadata hook installs,
    so that hook's `_compute_advantage` wrapper encloses this one (it provides the rows' metadata)."""
    when_imported(V1_TRAINER_MODULE, _patch_trainer)


install()
