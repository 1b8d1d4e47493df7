"""The step-metadata hook: verl's V1 trainer hands `non_tensor_batch` to estimators that accept it.

verl 0.9's `compute_advantage` calls a registered estimator with `token_level_rewards, response_mask, index,
config` only, and the V1 trainer's `_compute_advantage` reads a fixed list of fields from TransferQueue, so a
step-level estimator (`gigpo`, `scpo`) never sees which trajectory, step and observation a row belongs to. Two
narrow, version-checked patches, installed when verl imports the patched modules (`post_import`):

1. `verl.trainer.ppo.v1.trainer_base.PPOTrainer._compute_advantage`: reads the rows' `extra_fields` (written by
   the agent loop) from TransferQueue, plus `step_entropy` for an estimator that reads it (from the `entropy`
   the old-log-prob pass wrote), makes the step-metadata columns available to (2) for the duration of
   the call, then adds episode metrics (success overall / per task type, length, invalid rate) and the
   estimator's credit diagnostics to the iteration's metrics.
2. `verl.trainer.ppo.v1.utils.compute_advantage` (the name the V1 trainer calls): for an estimator whose
   signature has a `non_tensor_batch` parameter, calls it with `non_tensor_batch` = the batch's columns plus
   the step metadata, on the real rows only (verl's padding rows get zero advantages); every other estimator
   goes to verl's function unchanged.
3. `PPOTrainer.step`: the env/ and credit/ metrics over the whole step when it has several sub-steps.
4. `PPOTrainer.__init__`: `check_config` again, in the process that trains.

`check_config` fails at start-up (verl's `validate_config`, also wrapped) when a step-level estimator is
selected and the metadata cannot flow: legacy trainer, unsupported verl version, a patch that failed, or (for an
estimator reading `step_entropy`) a rollout-correction bypass mode that skips the old-log-prob pass; or when
the env agent loop runs with a reward model. The `validate_config` wrapper also lets env-loop runs count the
mini-batch in step rows and makes every Ray process of the run import the plugin loudly.
The upstream change in `upstream/` makes verl do (2) itself; (1) stays until the V1 trainer forwards extras.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from types import ModuleType
from typing import Any

import numpy as np
import torch

from verl_agent_ext.agent import AGENT_LOOP_NAME, EPISODE_KEYS, STEP_METADATA_KEYS
from verl_agent_ext.credit.batch import RESPONSE_TEXT_KEY
from verl_agent_ext.credit.empg import STEP_ENTROPY_KEY
from verl_agent_ext.verl_plugin.agent_loop_registry import check_config_before_init, uses_env_agent_loop
from verl_agent_ext.verl_plugin.metrics import combine_credit_diagnostics, episode_metrics
from verl_agent_ext.verl_plugin.post_import import when_imported

logger = logging.getLogger(__name__)

SUPPORTED_VERL = ((0, 9), (0, 10))
"""verl versions [low, high) whose trainer internals the patches were written against."""

V1_TRAINER_MODULE = "verl.trainer.ppo.v1.trainer_base"
V1_UTILS_MODULE = "verl.trainer.ppo.v1.utils"
ESTIMATORS_GIVEN_NON_TENSOR_BATCH_BY_VERL = frozenset({"gdpo"})
PADDING_COLUMN = "is_padding"
"""Hook-internal (bs,) bool column: verl's synthetic padding rows, left out of the estimator call."""

hook_status: dict[str, str] = {V1_TRAINER_MODULE: "not imported yet", V1_UTILS_MODULE: "not imported yet"}
"""Per patched module: "installed" or why not."""

_step_metadata: contextvars.ContextVar[dict[str, np.ndarray] | None] = contextvars.ContextVar(
    "verl_agent_ext_step_metadata", default=None
)


def install() -> None:
    """Ask to patch verl's V1 trainer modules when (or if already) imported. Called by the plugin."""
    when_imported(V1_UTILS_MODULE, _patch_v1_utils)
    when_imported(V1_TRAINER_MODULE, _patch_v1_trainer)
    when_imported("verl.utils.config", _patch_validate_config)


# --------------------------------------------------------------------------------------------------------------
# Which estimators take the metadata
# --------------------------------------------------------------------------------------------------------------


def estimator_name(adv_estimator: Any) -> str:
    """verl passes the name as a str or an `AdvantageEstimator` enum member."""
    return str(getattr(adv_estimator, "value", adv_estimator))


def estimator_taking_metadata(adv_estimator: Any) -> Callable[..., Any] | None:
    """The registered estimator function if it has a `non_tensor_batch` parameter that verl does not fill."""
    from verl.trainer.ppo import core_algos

    name = estimator_name(adv_estimator)
    if name in ESTIMATORS_GIVEN_NON_TENSOR_BATCH_BY_VERL:
        return None
    fn = core_algos.ADV_ESTIMATOR_REGISTRY.get(name)
    if fn is None:
        return None
    return fn if "non_tensor_batch" in inspect.signature(fn).parameters else None


# --------------------------------------------------------------------------------------------------------------
# Patch 2: compute_advantage passes non_tensor_batch
# --------------------------------------------------------------------------------------------------------------


def compute_advantage_passing_metadata(original: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap verl's `compute_advantage(data, adv_estimator, gamma, lam, num_repeat, norm_adv_by_std_in_grpo, config)`."""

    @functools.wraps(original)
    def compute_advantage(data: Any, adv_estimator: Any, *args: Any, **kwargs: Any) -> Any:
        fn = estimator_taking_metadata(adv_estimator)
        if fn is None:
            return original(data, adv_estimator, *args, **kwargs)
        bound = inspect.signature(original).bind(data, adv_estimator, *args, **kwargs)
        bound.apply_defaults()
        non_tensor_batch = dict(data.non_tensor_batch)
        pending = dict(_step_metadata.get() or {})
        padding = np.asarray(pending.pop(PADDING_COLUMN, np.zeros(len(data), dtype=bool)), dtype=bool)
        if pending:
            rows = {len(column) for column in pending.values()} | {len(padding)}
            if rows != {len(data)}:
                raise RuntimeError(f"step metadata has {rows} rows but the advantage batch has {len(data)}")
            non_tensor_batch.update(pending)
        if "response_mask" not in data.batch.keys():
            from verl.trainer.ppo.ray_trainer import compute_response_mask

            data.batch["response_mask"] = compute_response_mask(data)
        # verl's padding rows take no part in the estimator's groups or diagnostics; their advantage is 0
        real = np.flatnonzero(~padding)
        token_level_rewards = data.batch["token_level_rewards"]
        take = torch.as_tensor(real, dtype=torch.long, device=token_level_rewards.device)
        real_non_tensor_batch = {key: np.asarray(column)[real] for key, column in non_tensor_batch.items()}
        estimator_kwargs: dict[str, Any] = {
            "token_level_rewards": token_level_rewards[take],
            "response_mask": data.batch["response_mask"][take],
            "config": bound.arguments["config"],
            "non_tensor_batch": real_non_tensor_batch,
        }
        if "uid" in real_non_tensor_batch:
            estimator_kwargs["index"] = real_non_tensor_batch["uid"]
        real_advantages, real_returns = fn(**estimator_kwargs)
        advantages = real_advantages.new_zeros(token_level_rewards.shape)
        returns = real_returns.new_zeros(token_level_rewards.shape)
        advantages[take], returns[take] = real_advantages, real_returns
        data.batch["advantages"] = advantages
        data.batch["returns"] = returns
        return data

    compute_advantage.__verl_agent_ext_patch__ = True
    return compute_advantage


# --------------------------------------------------------------------------------------------------------------
# Patch 1: the V1 trainer fetches the step metadata and logs episode metrics
# --------------------------------------------------------------------------------------------------------------


def step_metadata_columns(
    extra_fields: Sequence[dict[str, Any] | None], keys: Sequence[str], is_padding: Sequence[bool]
) -> dict[str, np.ndarray] | None:
    """(bs,) columns of STEP_METADATA_KEYS + EPISODE_KEYS (+ the optional response_text) from the rows'
    extra_fields, or None if absent.

    verl's padding rows (copies of a real row, zero response mask) get a trajectory of their own so they
    never join a real trajectory's step groups.
    """
    real = [fields for fields, pad in zip(extra_fields, is_padding, strict=True) if not pad]
    if not real or not all(isinstance(fields, dict) and "traj_uid" in fields for fields in real):
        return None
    rows: list[dict[str, Any]] = []
    for fields, key, pad in zip(extra_fields, keys, is_padding, strict=True):
        if pad:
            rows.append(_padding_row(key))
        else:
            missing = [name for name in STEP_METADATA_KEYS if name not in fields]
            if missing:
                raise ValueError(f"row {key}: extra_fields lack step metadata {missing}")
            rows.append(fields)
    columns = {}
    for name in (*STEP_METADATA_KEYS, *EPISODE_KEYS, RESPONSE_TEXT_KEY):
        column = np.empty(len(rows), dtype=object)
        column[:] = [row.get(name) for row in rows]
        columns[name] = column
    return columns


def _padding_row(key: str) -> dict[str, Any]:
    return {
        "traj_uid": f"padding-{key}",
        "step_index": 0,
        "anchor_obs": "",
        "action_text": "",
        RESPONSE_TEXT_KEY: "",
        "step_reward": 0.0,
        "is_action_valid": True,
        "episode_success": False,
        "task_type": "",
        "episode_length": 1,
        "episode_truncated": False,
    }


def pending_step_metadata() -> dict[str, np.ndarray] | None:
    """The (bs,) step-metadata columns of the batch whose advantage is being computed, else None.

    A wrapper of `PPOTrainer._compute_advantage` installed before this hook runs inside it and may add columns
    (iStar's PRM adds `prm_step_reward`); they reach the estimator's `non_tensor_batch`.
    """
    return _step_metadata.get()


def compute_advantage_with_step_metadata(original: Callable[..., Any], tq: ModuleType) -> Callable[..., Any]:
    """Wrap `PPOTrainer._compute_advantage(self, batch: KVBatchMeta, metrics: dict) -> KVBatchMeta`."""

    @functools.wraps(original)
    def _compute_advantage(self: Any, batch: Any, metrics: dict[str, Any]) -> Any:
        algorithm = self.config.algorithm
        fn = estimator_taking_metadata(algorithm.adv_estimator)
        if fn is None and self.config.get("env") is None:
            return original(self, batch, metrics)
        fetched = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=["extra_fields"])
        is_padding = [bool(tag.get("is_padding", False)) for tag in batch.tags]
        columns = step_metadata_columns(fetched.pop("extra_fields").tolist(), batch.keys, is_padding)
        if columns is None:
            if fn is not None:
                raise ValueError(
                    f"algorithm.adv_estimator={estimator_name(algorithm.adv_estimator)} needs step metadata in "
                    f"every row's extra_fields, but the rollouts lack it: play them with the agent loop "
                    f"'{AGENT_LOOP_NAME}' (dataset column agent_name or "
                    f"actor_rollout_ref.rollout.agent.default_agent_loop={AGENT_LOOP_NAME})"
                )
            return original(self, batch, metrics)
        real = ~np.asarray(is_padding, dtype=bool)
        pending = {name: columns[name] for name in (*STEP_METADATA_KEYS, RESPONSE_TEXT_KEY)}
        if STEP_ENTROPY_KEY in _extra_metadata_keys(algorithm.adv_estimator):
            fetched = tq.kv_batch_get(
                keys=batch.keys, partition_id=batch.partition_id, select_fields=["entropy", "response_mask"]
            )
            pending[STEP_ENTROPY_KEY] = step_entropy_column(fetched.to_padded_tensor())
        token = _step_metadata.set({**pending, PADDING_COLUMN: ~real})
        try:
            result = original(self, batch, metrics)
        finally:
            _step_metadata.reset(token)
        real_columns = {name: column[real] for name, column in columns.items()}
        diagnostics = _credit_diagnostics(estimator_name(algorithm.adv_estimator)) if fn is not None else {}
        metrics.update(episode_metrics(real_columns))
        metrics.update(diagnostics)
        self.__dict__.setdefault(_SUB_STEP_CALLS, []).append((real_columns, diagnostics))
        return result

    _compute_advantage.__verl_agent_ext_patch__ = True
    return _compute_advantage


def step_entropy_column(fields: Any) -> np.ndarray:
    """(bs,) `step_entropy`: mean of the old-log-prob pass's token `entropy` (bs, R) over `response_mask` (bs, R).

    verl computes that entropy at the rollout temperature. Rows without response tokens (padding) get 0.
    """
    mask = fields["response_mask"].to(fields["entropy"].dtype)
    return ((fields["entropy"] * mask).sum(-1) / mask.sum(-1).clamp(min=1)).double().cpu().numpy()


def _extra_metadata_keys(adv_estimator: Any) -> tuple[str, ...]:
    from verl_agent_ext.verl_plugin import estimators

    return estimators.EXTRA_METADATA_KEYS.get(estimator_name(adv_estimator), ())


def _credit_diagnostics(name: str) -> dict[str, float]:
    from verl_agent_ext.verl_plugin import estimators

    if name not in estimators.STEP_ESTIMATORS:
        return {}
    return {f"credit/{key}": float(value) for key, value in estimators.last_diagnostics().items()}


_SUB_STEP_CALLS = "_verl_agent_ext_sub_step_calls"
"""Trainer attribute: (real-row columns, credit diagnostics) of each `_compute_advantage` call of the step."""


def step_with_whole_step_metrics(original: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap `PPOTrainer.step(self, metrics, timing_raw) -> KVBatchMeta`.

    With `parameter_sync_step > 1` one training step runs several sub-steps, and verl averages their metrics
    weighted by rows: episode counts are averaged instead of summed and long (failed) episodes outweigh short
    ones. The env/ and credit/ metrics of the step are recomputed here over all its sub-steps.
    """

    @functools.wraps(original)
    def step(self: Any, metrics: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        self.__dict__[_SUB_STEP_CALLS] = []
        result = original(self, metrics, *args, **kwargs)
        calls = self.__dict__.pop(_SUB_STEP_CALLS, [])
        if len(calls) > 1:
            columns = {name: np.concatenate([call[0][name] for call in calls]) for name in calls[0][0]}
            metrics.update(episode_metrics(columns))
            if any(call[1] for call in calls):
                rows = [len(call[0]["traj_uid"]) for call in calls]
                metrics.update(combine_credit_diagnostics([call[1] for call in calls], rows))
        return result

    step.__verl_agent_ext_patch__ = True
    return step


# --------------------------------------------------------------------------------------------------------------
# Installing the patches
# --------------------------------------------------------------------------------------------------------------


def verl_version_supported() -> tuple[bool, str]:
    """(supported, version) of the installed verl."""
    from importlib.metadata import version

    from packaging.version import Version

    installed = version("verl")
    release = Version(installed).release[:2]
    low, high = SUPPORTED_VERL
    return low <= release < high, installed


def _patch(module: ModuleType, owner: Any, attribute: str, make: Callable[[Callable[..., Any]], Any]) -> None:
    supported, installed = verl_version_supported()
    if not supported:
        hook_status[module.__name__] = (
            f"verl {installed} is not supported by the step-metadata hook (written for verl >= 0.9, < 0.10)"
        )
        return
    original = getattr(owner, attribute, None)
    if original is None:
        hook_status[module.__name__] = f"{module.__name__} has no {attribute}: verl's internals changed"
        return
    if getattr(original, "__verl_agent_ext_patch__", False):
        hook_status[module.__name__] = "installed"
        return
    setattr(owner, attribute, make(original))
    hook_status[module.__name__] = "installed"


def _patch_v1_utils(module: ModuleType) -> None:
    _patch(module, module, "compute_advantage", compute_advantage_passing_metadata)


def _patch_v1_trainer(module: ModuleType) -> None:
    tq = getattr(module, "tq", None)
    trainer = getattr(module, "PPOTrainer", None)
    if tq is None or trainer is None:
        hook_status[module.__name__] = f"{module.__name__} lacks tq or PPOTrainer: verl's internals changed"
        return
    _patch(module, trainer, "_compute_advantage", lambda original: compute_advantage_with_step_metadata(original, tq))
    if hook_status[module.__name__] == "installed":
        _patch(module, trainer, "step", step_with_whole_step_metrics)
    # verl builds the trainer in its TaskRunner Ray actor, not in the process that validated the config: check
    # there too, or a plugin or patch that failed there would show only at the first advantage computation
    check_config_before_init(trainer, check_config)


def _patch_validate_config(module: ModuleType) -> None:
    original = getattr(module, "validate_config", None)
    if original is None or getattr(original, "__verl_agent_ext_patch__", False):
        return

    @functools.wraps(original)
    def validate_config(config: Any, *args: Any, **kwargs: Any) -> Any:
        check_config(config)  # first: our reason is the precise one when the run cannot work
        with mini_batch_counted_in_step_rows(config):
            result = original(config, *args, **kwargs)
        import_plugin_in_ray_processes(config)
        return result

    validate_config.__verl_agent_ext_patch__ = True
    module.validate_config = validate_config


@contextlib.contextmanager
def mini_batch_counted_in_step_rows(config: Any) -> Iterator[None]:
    """During verl's checks, hide an env-loop run's `actor.ppo_mini_batch_size` above `data.train_batch_size`.

    verl's `ActorConfig.validate` requires ppo_mini_batch_size <= train_batch_size (both in prompts), which
    holds when each session is one row. The V1 trainer cuts mini-batches of ppo_mini_batch_size x rollout.n rows
    (`PPOTrainer._update_actor`) whatever the number of prompts, and the env agent loop gives one row per step,
    so the published schedule (256 x 8 = 2,048 step rows per optimizer step with 16 tasks per iteration) needs
    a larger value: the check is run with the value capped at train_batch_size, then the value is restored.
    """
    actor = (config.get("actor_rollout_ref") or {}).get("actor")
    train_batch_size = (config.get("data") or {}).get("train_batch_size")
    value = None if actor is None else actor.get("ppo_mini_batch_size")
    relax = (
        uses_env_agent_loop(config)
        and not actor.get("use_dynamic_bsz", False)
        and isinstance(value, int)
        and isinstance(train_batch_size, int)
        and value > train_batch_size
    )
    if relax:
        actor.ppo_mini_batch_size = train_batch_size
    try:
        yield
    finally:
        if relax:
            actor.ppo_mini_batch_size = value


PLUGIN_MODULE = "verl_agent_ext.verl_plugin"
EXTERNAL_MODULES_ENV = "VERL_USE_EXTERNAL_MODULES"


def import_plugin_in_ray_processes(config: Any) -> None:
    """Make every Ray process of an env-loop run import the plugin, failing loudly if it cannot.

    verl loads `verl.plugins` entry points at `import verl` and logs a failure at DEBUG level only, so a node
    with a broken install would train without the hook or fail its agent-loop sessions one by one. Modules named
    in verl's `VERL_USE_EXTERNAL_MODULES` are imported without that guard: the plugin is added there, in the
    Ray runtime environment of the run (`ray_kwargs.ray_init.runtime_env.env_vars`), so the TaskRunner and
    every worker actor stop at creation with the import error.
    """
    from omegaconf import open_dict

    runtime_env = ((config.get("ray_kwargs") or {}).get("ray_init") or {}).get("runtime_env")
    name = ((config.get("algorithm") or {}).get("adv_estimator")) or "gae"
    if runtime_env is None or not (uses_env_agent_loop(config) or estimator_taking_metadata(name) is not None):
        return
    with open_dict(runtime_env):
        if runtime_env.get("env_vars") is None:
            runtime_env.env_vars = {}
        # the runtime env's value replaces the launching shell's in the Ray processes: keep the modules of both
        named = f"{runtime_env.env_vars.get(EXTERNAL_MODULES_ENV) or ''},{os.environ.get(EXTERNAL_MODULES_ENV, '')}"
        modules = list(dict.fromkeys(name.strip() for name in named.split(",") if name.strip()))
        if PLUGIN_MODULE not in modules:
            runtime_env.env_vars[EXTERNAL_MODULES_ENV] = ",".join([*modules, PLUGIN_MODULE])


# --------------------------------------------------------------------------------------------------------------
# Start-up check
# --------------------------------------------------------------------------------------------------------------


def check_config(config: Any) -> None:
    """Raise at start-up if a step-level estimator or the environment agent loop cannot work with this config.

    Runs of the env agent loop (an `env` section, or it is the default agent loop) need the V1 trainer and a
    valid `env` section. A step-level estimator also needs both patches installed (this imports verl's V1
    trainer modules, which installs them in this process). Other runs: no-op.
    """
    from verl_agent_ext.verl_plugin import estimators, sspo  # noqa: F401  (the step estimators must be registered)

    algorithm = config.get("algorithm") or {}
    name = estimator_name(algorithm.get("adv_estimator", "gae"))
    rollout = config.get("actor_rollout_ref", {}).get("rollout", {})
    default_loop = (rollout.get("agent") or {}).get("default_agent_loop")
    step_estimator = estimator_taking_metadata(name) is not None
    if not (step_estimator or uses_env_agent_loop(config)):
        return
    if not (config.get("trainer") or {}).get("use_v1", True):
        raise ValueError(
            f"the {AGENT_LOOP_NAME} agent loop (algorithm.adv_estimator={name}) returns one training row per "
            "environment step, which verl's legacy trainer (trainer.use_v1=False) does not support: its agent-loop "
            "worker keeps one output per session. Use the V1 trainer (trainer.use_v1=True, verl's default)."
        )
    if ((config.get("reward") or {}).get("reward_model") or {}).get("enable", False):
        raise ValueError(
            f"reward.reward_model.enable=True cannot be used with the {AGENT_LOOP_NAME} agent loop: each step row's "
            "reward is its episode's environment return; verl's colocated reward model would overwrite it with a "
            "score of that one step's text, and a reward model on its own resource pool is skipped for rows that "
            "already carry a score. Set reward.reward_model.enable=False: the environment gives the reward."
        )
    from verl_agent_ext.agent.config import EnvLoopConfig

    EnvLoopConfig.from_mapping(config.get("env"))
    sspo.check_config(config)
    if not step_estimator:
        return
    import importlib

    try:
        for module_name in (V1_UTILS_MODULE, V1_TRAINER_MODULE):
            importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        raise RuntimeError(
            f"verl's V1 trainer cannot be imported ({error}); it needs TransferQueue: "
            "pip install 'TransferQueue>=0.1.10' (included in verl's vllm/sglang/verl-core extras)"
        ) from error
    broken = {module: status for module, status in hook_status.items() if status != "installed"}
    if broken:
        raise RuntimeError(
            f"algorithm.adv_estimator={name} needs the verl_agent_ext step-metadata hook, which is not installed: "
            f"{broken}. Use verl >=0.9.1,<0.10 with verl_agent_ext installed (plugins on: "
            "VERL_USE_EXTERNAL_PLUGINS unset or naming verl_agent_ext)."
        )
    rollout_correction = algorithm.get("rollout_correction") or {}
    if STEP_ENTROPY_KEY in _extra_metadata_keys(name) and rollout_correction.get("bypass_mode", False):
        raise ValueError(
            f"algorithm.adv_estimator={name} reads each step's policy entropy from verl's old-log-prob pass, which "
            "algorithm.rollout_correction.bypass_mode=True skips (old log-probs are copied from the rollout, no "
            "entropy is computed). Set algorithm.rollout_correction.bypass_mode=False (decoupled mode)."
        )
    if default_loop != AGENT_LOOP_NAME:
        logger.warning(
            "adv_estimator=%s: rollout.agent.default_agent_loop is %r; rows must name agent_name=%s",
            name,
            default_loop,
            AGENT_LOOP_NAME,
        )


install()
