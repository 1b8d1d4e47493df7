"""Hyperparameters of the local trainer (one dataclass), and the verl config composed from them.

The trainer reads verl's real config objects: `compose_verl_config` builds verl's `ppo_trainer` config with hydra
(`pkg://verl.trainer.config`, as the recipe does) and writes these settings into it, so the policy loss, KL and
aggregation read `actor_rollout_ref.actor` exactly as on a cluster, and the estimators read `algorithm`.
Any other verl key can be set through `verl_overrides` (hydra syntax, e.g. "+algorithm.scpo.theta=0.8").
"""

from __future__ import annotations

import typing
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from verl_agent_ext.agent.config import SMALL_MODEL_PROMPT
from verl_agent_ext.policy.model import DEFAULT_MODEL


@dataclass
class LocalTrainConfig:
    """Everything one local training run needs; defaults are the CPU quickstart sizes.

    Data: `groups_per_iter` tasks per iteration, each played `group_size` times (a verl group, same `uid`);
    tasks come from the cached generated ALFWorld set (`games_per_type` games of each of the 6 task types, or of
    `task_types`), or every game under `games_dir` when given.
    """

    # run
    out_dir: str = "runs/local"
    iterations: int = 4
    seed: int = 0
    resume: bool = True  # continue from out_dir/checkpoint when it exists
    force_resume: bool = False  # resume even when the checkpoint's estimator / model / adapter / env differ
    save_every: int = 1  # iterations between checkpoints (the last one and an interrupt always save)
    device: str = "auto"  # "auto": cuda when available, else cpu
    num_threads: int = 0  # torch CPU threads (0: torch's default)
    # model
    model: str = DEFAULT_MODEL  # short name of a shipped GGUF model, a local folder or a HF hub name
    lora_rank: int = 8  # 0: train all weights
    lora_alpha: int = 16
    init_adapter: str = ""  # start from this PEFT LoRA adapter (folder); "" = a fresh LoRA
    # data and environment
    env: str = "alfworld"
    games_dir: str | None = None
    games_per_type: int = 2
    games_seed: int = 0  # seed of the generated games (the run's `seed` leaves the games unchanged)
    task_types: str = ""  # comma-separated ALFWorld task types to play ("" = all six)
    solvable_within: int = 0  # train only on tasks the searching expert wins within this many steps (0: all)
    groups_per_iter: int = 2
    group_size: int = 4
    max_steps: int = 3  # environment steps per episode
    history_length: int = SMALL_MODEL_PROMPT.history_length  # past turns in the prompt
    max_actions: int = SMALL_MODEL_PROMPT.max_actions  # admissible actions listed in the prompt (ALFWorld)
    prompt_template: str = SMALL_MODEL_PROMPT.prompt_template  # "" for the environment's default template
    response_prefix: str = "<action>"  # prefilled start of every answer (env.response_prefix); "" for none
    prompt_length: int = 512  # tokens
    response_length: int = 24  # tokens per step
    # rollout
    temperature: float = 0.7
    top_p: float = 1.0
    garbage_tokens: bool = False  # sample uniformly random tokens (bad-input test)
    # credit
    estimator: str = "scpo"  # any registered verl estimator: grpo, gigpo, scpo, ...
    gamma: float = 0.95
    invalid_action_penalty: float = 0.1
    # update
    lr: float = 1e-4
    ppo_epochs: int = 1
    micro_batch_size: int = 4  # step rows per forward/backward
    clip_ratio: float = 0.2
    loss_agg_mode: str = "token-mean"
    kl_coef: float = 0.0  # > 0: KL loss to the frozen base model (needs LoRA), verl's kl_penalty
    kl_type: str = "low_var_kl"
    entropy_coeff: float = 0.0
    grad_clip: float = 1.0
    verl_overrides: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.verl_overrides = honour_mirrored_overrides(self, self.verl_overrides)
        positive = ("iterations", "groups_per_iter", "group_size", "max_steps", "prompt_length", "response_length")
        for name in (*positive, "micro_batch_size", "ppo_epochs", "save_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.kl_coef > 0 and self.lora_rank == 0 and not self.init_adapter:
            raise ValueError("kl_coef > 0 uses the frozen base model as reference: it needs lora_rank > 0")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> LocalTrainConfig:
        valid = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - valid)
        if unknown:
            raise ValueError(f"unknown local trainer settings {unknown}; valid: {sorted(valid)}")
        return cls(**values)


def verl_overrides(config: LocalTrainConfig) -> list[str]:
    """Hydra overrides of verl's `ppo_trainer` config that mirror `config` (then the user's own)."""
    batch_rows = config.groups_per_iter * config.group_size
    return [
        f"algorithm.adv_estimator={config.estimator}",
        f"algorithm.gamma={config.gamma}",
        f"+algorithm.gigpo.invalid_action_penalty={config.invalid_action_penalty}",
        f"actor_rollout_ref.rollout.n={config.group_size}",
        f"actor_rollout_ref.rollout.prompt_length={config.prompt_length}",
        f"actor_rollout_ref.rollout.response_length={config.response_length}",
        f"actor_rollout_ref.rollout.temperature={config.temperature}",
        f"actor_rollout_ref.rollout.top_p={config.top_p}",
        f"actor_rollout_ref.actor.ppo_mini_batch_size={batch_rows}",
        f"actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu={config.micro_batch_size}",
        f"actor_rollout_ref.actor.ppo_epochs={config.ppo_epochs}",
        f"actor_rollout_ref.actor.clip_ratio={config.clip_ratio}",
        f"actor_rollout_ref.actor.clip_ratio_low={config.clip_ratio}",
        f"actor_rollout_ref.actor.clip_ratio_high={config.clip_ratio}",
        f"actor_rollout_ref.actor.loss_agg_mode={config.loss_agg_mode}",
        f"actor_rollout_ref.actor.use_kl_loss={config.kl_coef > 0}",
        f"actor_rollout_ref.actor.kl_loss_coef={config.kl_coef}",
        f"actor_rollout_ref.actor.kl_loss_type={config.kl_type}",
        f"actor_rollout_ref.actor.entropy_coeff={config.entropy_coeff}",
        f"actor_rollout_ref.actor.optim.lr={config.lr}",
        f"actor_rollout_ref.actor.optim.clip_grad={config.grad_clip}",
        f"+env.name={config.env}",
        f"+env.max_steps={config.max_steps}",
        f"+env.history_length={config.history_length}",
        f"+env.response_prefix={_hydra_quoted(config.response_prefix)}",
        *config.verl_overrides,
    ]


# verl keys train-local writes from its own options: a `--set` of one of them sets that option instead (it would
# otherwise be overwritten or, for keys the trainer reads from its options, ignored).
MIRRORED_KEYS = {
    "algorithm.adv_estimator": "estimator",
    "algorithm.gamma": "gamma",
    "algorithm.gigpo.invalid_action_penalty": "invalid_action_penalty",
    "actor_rollout_ref.rollout.n": "group_size",
    "actor_rollout_ref.rollout.prompt_length": "prompt_length",
    "actor_rollout_ref.rollout.response_length": "response_length",
    "actor_rollout_ref.rollout.temperature": "temperature",
    "actor_rollout_ref.rollout.top_p": "top_p",
    "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu": "micro_batch_size",
    "actor_rollout_ref.actor.ppo_epochs": "ppo_epochs",
    "actor_rollout_ref.actor.clip_ratio": "clip_ratio",
    "actor_rollout_ref.actor.loss_agg_mode": "loss_agg_mode",
    "actor_rollout_ref.actor.kl_loss_coef": "kl_coef",
    "actor_rollout_ref.actor.kl_loss_type": "kl_type",
    "actor_rollout_ref.actor.entropy_coeff": "entropy_coeff",
    "actor_rollout_ref.actor.optim.lr": "lr",
    "actor_rollout_ref.actor.optim.clip_grad": "grad_clip",
    "env.name": "env",
    "env.max_steps": "max_steps",
    "env.history_length": "history_length",
    "env.response_prefix": "response_prefix",
}
# verl keys train-local derives from several options: a `--set` of one is refused, naming the options.
DERIVED_KEYS = {
    "actor_rollout_ref.actor.ppo_mini_batch_size": "--groups-per-iter x --group-size (one mini-batch per iteration)",
    "actor_rollout_ref.actor.clip_ratio_low": "--clip-ratio",
    "actor_rollout_ref.actor.clip_ratio_high": "--clip-ratio",
    "actor_rollout_ref.actor.use_kl_loss": "--kl-coef (> 0 turns the KL loss on)",
}


def honour_mirrored_overrides(config: LocalTrainConfig, overrides: list[str]) -> list[str]:
    """Apply `--set` overrides of MIRRORED_KEYS to `config`'s options (typed as the option); returns the rest.

    Raises ValueError for a DERIVED_KEYS override and for a value of the wrong type, naming the key and option.
    """
    from verl_agent_ext.credit.batch import strict_bool

    kinds = typing.get_type_hints(type(config))
    rest = []
    for override in overrides:
        key, has_value, value = override.lstrip("+~").partition("=")
        key = key.strip()
        if key in DERIVED_KEYS:
            raise ValueError(f"--set {override}: train-local sets {key} from {DERIVED_KEYS[key]}; use that option")
        if key not in MIRRORED_KEYS:
            rest.append(override)
            continue
        option = MIRRORED_KEYS[key]
        flag = "--" + option.replace("_", "-")
        if not has_value or override.startswith("~"):
            raise ValueError(f"--set {override}: train-local sets {key} from {flag}; give it a value there")
        text = value.strip()
        if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
            text = text[1:-1]
        kind = kinds[option]
        try:
            parsed = strict_bool(key, text) if kind is bool else kind(text) if kind in (int, float) else text
        except ValueError:
            raise ValueError(f"--set {override}: {key} ({flag}) must be {kind.__name__}, got {text!r}") from None
        setattr(config, option, parsed)
    return rest


def check_settings(config: LocalTrainConfig):
    """verl's composed config for `config`, with every setting of its estimator validated: before any work.

    Raises ValueError (one line) for hydra errors in `--set`, an unknown estimator or a bad estimator setting.
    """
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from verl_agent_ext.credit.contract import estimator_settings
    from verl_agent_ext.local.advantages import estimator_fn

    estimator_fn(config.estimator)
    try:
        verl_config = compose_verl_config(config)
    except (HydraException, OmegaConfBaseException) as error:
        message = " ".join(str(error).split())
        raise ValueError(f"--set {config.verl_overrides}: {message}") from None
    estimator_settings(config.estimator, verl_config.algorithm)
    return verl_config


def _hydra_quoted(text: str) -> str:
    """`text` as a quoted hydra override value (so "<action>" and the like parse as a plain string)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def compose_verl_config(config: LocalTrainConfig):
    """verl's `ppo_trainer` DictConfig with this run's settings (hydra compose, no working-dir change)."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="verl.trainer.config", version_base=None):
        return compose(config_name="ppo_trainer", overrides=verl_overrides(config))


def actor_config(verl_config):
    """verl's `ActorConfig` dataclass of `actor_rollout_ref.actor` (what verl's policy-loss functions read)."""
    from verl.utils.config import omega_conf_to_dataclass

    return omega_conf_to_dataclass(verl_config.actor_rollout_ref.actor)
