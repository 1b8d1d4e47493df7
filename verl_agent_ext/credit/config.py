"""Hyperparameters of the step-level estimators, and reading them from verl's `algorithm` config section.

verl users write e.g. `algorithm.gamma=0.95 +algorithm.gigpo.mode=mean_std_norm +algorithm.scpo.theta=0.8`.
Unknown keys and unknown option values raise a ValueError listing the valid ones.
"""

from __future__ import annotations

import math
import numbers
import typing
from dataclasses import dataclass, field, fields, replace
from functools import cache
from typing import Any

from verl_agent_ext.credit.batch import NONFINITE_POLICIES, strict_bool
from verl_agent_ext.semantic.encoder import SEGMENTS
from verl_agent_ext.semantic.models import resolve_device
from verl_agent_ext.semantic.onnx_runtime import BACKENDS
from verl_agent_ext.semantic.static import STATIC_VARIANTS

EPISODE_NORM_OVER = ("steps", "trajectories")
GIGPO_MODES = ("mean_norm", "mean_std_norm")
SIMILARITIES = ("exact", "difflib", "static", "embedding", "cross_encoder")
SCPO_REFERENCES = ("longest", "shortest", "all")
SCPO_STEP_TEXTS = ("obs_action", "obs_response", "action", "obs")
SCPO_MATCHERS = ("auto", "embedding", "static", "cross_encoder", "exact", "difflib")
SCPO_ALPHA_SCALES = ("reward", "success_return")
SCPO_SEGMENTS = SEGMENTS
SCPO_BACKENDS = BACKENDS
EMPG_BASES = ("grpo", "gigpo", "scpo")
# Default SCPO threshold per matcher: embedding and static chosen with `credit-eval` on seeds 0-4 (docs/credit.md).
# `matcher=auto` (the default) is exact string matching, except for step_text=obs_response (free text that rarely
# repeats verbatim), which gets the static matcher: exact was best or tied on every text kind measured.
DEFAULT_THETA = {"embedding": 0.95, "static": 0.99, "cross_encoder": 0.6, "exact": 0.5, "difflib": 0.8}


@dataclass(frozen=True)
class GiGPOConfig:
    """GiGPO: A = A^E + step_advantage_w * A^S (arXiv 2505.10978).

    gamma: discount of env rewards inside a trajectory (step returns).
    step_advantage_w: weight omega of the step channel.
    mode: mean_norm (A = R - mean) or mean_std_norm (A = (R - mean) / (std + epsilon)), both channels.
    episode_norm_over: "steps" (every step row enters its group's episode statistics, reference code) or
        "trajectories" (one entry per trajectory, paper Eq. 3).
    similarity: anchor-state grouping: exact text, or greedy clustering with a matcher (difflib, embedding,
        cross_encoder) at similarity_thresh against each cluster's first member.
    invalid_action_penalty: subtracted from the episode score and the step return of invalid steps.
    model: encoder for similarity=embedding/cross_encoder (None: all-MiniLM-L6-v2 shipped offline).
    device: where learned matchers run (gigpo's and scpo's): "cpu" (default), "cuda", "cuda:<i>", or "auto".
        verl runs the estimator in its driver actor (TaskRunner), which Ray gives no GPU; see docs/credit.md.
    threads: CPU threads of learned matchers (None: the process's torch setting, 1 in verl's driver actor).
    on_nonfinite: a trajectory with a NaN / inf / None reward or return: "raise" (refuse the batch) or "mask"
        (its rows get advantage 0, counted in `<estimator>/masked_trajectories`). SCPO and 3SPO read it from
        `algorithm.gigpo` unless their own section sets it.
    """

    gamma: float = 0.95
    step_advantage_w: float = 1.0
    mode: str = "mean_norm"
    episode_norm_over: str = "steps"
    similarity: str = "exact"
    similarity_thresh: float = 0.95
    invalid_action_penalty: float = 0.1
    epsilon: float = 1e-6
    model: str | None = None
    device: str = "cpu"
    threads: int | None = None
    on_nonfinite: str = "raise"

    def __post_init__(self) -> None:
        check_types(self, "gigpo")
        check_choice("gigpo.on_nonfinite", self.on_nonfinite, NONFINITE_POLICIES)
        resolve_device(self.device)  # raises on an unknown device, listing the valid ones
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise ValueError(f"gigpo.threads={self.threads!r} must be a positive integer or None")
        check_choice("gigpo.mode", self.mode, GIGPO_MODES)
        check_choice("gigpo.episode_norm_over", self.episode_norm_over, EPISODE_NORM_OVER)
        check_choice("gigpo.similarity", self.similarity, SIMILARITIES)
        check_range("gamma", self.gamma, 0.0, 1.0)
        check_range("gigpo.similarity_thresh", self.similarity_thresh, -1.0, 1.0)
        check_range("gigpo.epsilon", self.epsilon, 0.0, float("inf"))

    @property
    def use_std(self) -> bool:
        return self.mode == "mean_std_norm"


@dataclass(frozen=True)
class SCPOConfig:
    """SCPO: GiGPO whose step channel uses returns shaped by semantic credit from a successful sibling.

    theta: similarity threshold; a failed step matched to a reference step with score M > theta earns
        c = (M - theta) / (1 - theta) in (0, 1]. None: the matcher's default (DEFAULT_THETA), because scores
        live on different scales (MiniLM cosine of two unrelated ALFWorld steps is already ~0.5-0.7).
    alpha: weight of the credit added to the step return, R~_t = R_t + alpha * u * c_t.
    alpha_scale: the unit u of alpha: "reward" (u = 1, alpha in reward units, the paper's formula) or
        "success_return" (u = the largest episode return among the group's successes: alpha is a fraction of a
        success, the same on every reward scale).
    reference: which successful sibling(s) of the group: longest, shortest, or all (credit = best over them).
    step_text: text compared per step: observation + action, observation + the model's full response (thought and
        action; needs the agent loop's `response_text`), action only, or observation only.
    matcher: auto (the default: exact, or static for step_text=obs_response; on credit-eval's oracle exact was
        best on ALFWorld's templates and tied with every embedding matcher on paraphrased ALFWorld and WebShop,
        docs/credit.md), exact, static (token vectors distilled from the bi-encoder), embedding (bi-encoder
        cosine), cross_encoder, or difflib.
    model: matcher model name or path (None: all-MiniLM-L6-v2 shipped offline).
    segments: embedding matcher only: "joint" embeds the joined observation + action text, "separate" embeds
        observations and actions once each and combines them (semantic/encoder.py `combine_segments`).
    backend: embedding matcher only: "torch", or the same model on ONNX Runtime, "onnx" / "onnx_int8".
    static_variant: static matcher only: "sif" (centred + PCA + Zipf/SIF token weights, model2vec's recipe),
        "pca" (centred + PCA) or "plain" (raw distilled vectors); semantic/static.py.
    gigpo: the GiGPO settings underneath (keys of `algorithm.gigpo`, overridable inside `algorithm.scpo`).
    Defaults are justified in docs/credit.md.
    """

    theta: float | None = None
    alpha: float = 1.0
    alpha_scale: str = "success_return"
    reference: str = "all"
    step_text: str = "obs_action"
    matcher: str = "auto"
    model: str | None = None
    segments: str = "joint"
    backend: str = "torch"
    static_variant: str = "sif"
    gigpo: GiGPOConfig = field(default_factory=GiGPOConfig)

    def __post_init__(self) -> None:
        check_types(self, "scpo")
        check_choice("scpo.static_variant", self.static_variant, STATIC_VARIANTS)
        check_choice("scpo.reference", self.reference, SCPO_REFERENCES)
        check_choice("scpo.step_text", self.step_text, SCPO_STEP_TEXTS)
        check_choice("scpo.matcher", self.matcher, SCPO_MATCHERS)
        if self.matcher == "auto":
            object.__setattr__(self, "matcher", "static" if self.step_text == "obs_response" else "exact")
        check_choice("scpo.alpha_scale", self.alpha_scale, SCPO_ALPHA_SCALES)
        check_choice("scpo.segments", self.segments, SCPO_SEGMENTS)
        check_choice("scpo.backend", self.backend, SCPO_BACKENDS)
        if self.theta is None:
            object.__setattr__(self, "theta", DEFAULT_THETA[self.matcher])
        check_range("scpo.theta", self.theta, -1.0, 1.0, include_high=False)
        check_range("scpo.alpha", self.alpha, 0.0, float("inf"))


GIGPO_KEYS = tuple(f.name for f in fields(GiGPOConfig) if f.name != "gamma")
SCPO_KEYS = tuple(f.name for f in fields(SCPOConfig) if f.name != "gigpo")


def gigpo_config_from(config: Any = None) -> GiGPOConfig:
    """GiGPOConfig from verl's `algorithm` section (DictConfig, dict, dataclass) or None (defaults).

    Reads `gamma` and the `gigpo` sub-section; a GiGPOConfig is returned unchanged.
    """
    if isinstance(config, GiGPOConfig):
        return config
    options = settings_section(config, "gigpo", GIGPO_KEYS)
    gamma = get_setting(config, "gamma", None)
    if gamma is not None:
        options["gamma"] = gamma
    return GiGPOConfig(**options)


def scpo_config_from(config: Any = None) -> SCPOConfig:
    """SCPOConfig from verl's `algorithm` section: `scpo` keys, plus gigpo keys from `gigpo` then from `scpo`.

    A key given in `scpo` overrides the same key in `gigpo` (e.g. `algorithm.scpo.step_advantage_w=0.5`).
    """
    if isinstance(config, SCPOConfig):
        return config
    return _with_gigpo(config, "scpo", SCPOConfig, SCPO_KEYS)


def _with_gigpo(config: Any, name: str, config_class: type, keys: tuple[str, ...]) -> Any:
    """`config_class` from the `name` section, whose gigpo keys override those of `algorithm.gigpo`."""
    options = settings_section(config, name, keys + GIGPO_KEYS)
    overrides = {key: options.pop(key) for key in GIGPO_KEYS if key in options}
    return config_class(**options, gigpo=replace(gigpo_config_from(config), **overrides))


@dataclass(frozen=True)
class EMPGConfig:
    """EMPG (arXiv 2509.09265): the base advantage modulated by each step's policy entropy.

    base: the base advantage A_base: "grpo" (the paper's: episode-level, GiGPO's episode channel with
        norm_by_std) or "gigpo" / "scpo" (their full advantage; a combination no one has measured).
    k: sharpness of the confidence scaling g = exp(-k H~) / mean(exp(-k H~)).
    k_next: sharpness of the future-clarity bonus f = exp(-k_next H~_{t+1}).
    zeta: weight of the future-clarity bonus (advantage units).
    epsilon: in the min-max normalisation of H and the mean of g (the authors' pseudocode: 1e-8).
    norm_by_std: base=grpo divides by the group std (verl's `algorithm.norm_adv_by_std_in_grpo`).
    on_nonfinite: "raise" or "mask" (see GiGPOConfig), for non-finite rewards, returns and step entropies.
    gigpo / scpo: the base estimator's settings (`algorithm.gigpo`, `algorithm.scpo`); scpo only for base=scpo.
    Defaults are justified in docs/empg.md.
    """

    base: str = "grpo"
    k: float = 1.0
    k_next: float = 1.0
    zeta: float = 0.1
    epsilon: float = 1e-8
    norm_by_std: bool = True
    on_nonfinite: str = "raise"
    gigpo: GiGPOConfig = field(default_factory=GiGPOConfig)
    scpo: SCPOConfig | None = None

    def __post_init__(self) -> None:
        check_types(self, "empg")
        check_choice("empg.base", self.base, EMPG_BASES)
        check_choice("empg.on_nonfinite", self.on_nonfinite, NONFINITE_POLICIES)
        for name in ("k", "k_next", "zeta"):
            check_range(f"empg.{name}", getattr(self, name), 0.0, float("inf"))
        check_range("empg.epsilon", self.epsilon, 0.0, float("inf"))
        if self.base == "scpo" and self.scpo is None:
            object.__setattr__(self, "scpo", replace(SCPOConfig(), gigpo=self.gigpo))


EMPG_KEYS = ("base", "k", "k_next", "zeta", "epsilon", "on_nonfinite")


def empg_config_from(config: Any = None) -> EMPGConfig:
    """EMPGConfig from verl's `algorithm` section: `empg` keys, `norm_adv_by_std_in_grpo`, and the base's sections."""
    if isinstance(config, EMPGConfig):
        return config
    options = settings_section(config, "empg", EMPG_KEYS)
    options.setdefault("on_nonfinite", gigpo_config_from(config).on_nonfinite)
    base = options.get("base", EMPGConfig.base)
    return EMPGConfig(
        **options,
        norm_by_std=strict_bool(
            "algorithm.norm_adv_by_std_in_grpo", get_setting(config, "norm_adv_by_std_in_grpo", True)
        ),
        gigpo=gigpo_config_from(config),
        scpo=scpo_config_from(config) if base == "scpo" else None,
    )


def get_setting(config: Any, key: str, default: Any) -> Any:
    if config is None:
        return default
    if hasattr(config, "get"):
        return config.get(key, default)
    return getattr(config, key, default)


def settings_section(config: Any, name: str, valid: tuple[str, ...]) -> dict[str, Any]:
    """The `name` sub-section as a plain dict; unknown keys raise, listing the valid ones."""
    section = get_setting(config, name, None) or {}
    if hasattr(section, "items"):
        options = dict(section.items())
    elif hasattr(section, "__dict__"):
        options = dict(vars(section))
    else:
        raise ValueError(
            f"algorithm.{name} must be a section of keys (e.g. algorithm.{name}.KEY=VALUE), got {section!r}"
        )
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in algorithm.{name}; valid keys: {sorted(valid)}")
    return options


def check_types(config: Any, prefix: str) -> None:
    """Check (and coerce) every field of a settings dataclass against its annotation; errors name the key.

    float: a finite real number (an int becomes a float); int: an integer; bool: parsed strictly ("False" is
    false, other strings raise); str: a string; `X | None`: None or X. Nested settings are checked by their own.
    """
    for name, (kind, optional) in _field_kinds(type(config)).items():
        value = getattr(config, name)
        if value is None and optional:
            continue
        key = name if name == "gamma" else f"{prefix}.{name}"
        if kind is bool:
            object.__setattr__(config, name, strict_bool(key, value))
        elif kind is float:
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
                raise ValueError(f"{key}={value!r} must be a finite number")
            object.__setattr__(config, name, float(value))
        elif kind is int:
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise ValueError(f"{key}={value!r} must be an integer")
            object.__setattr__(config, name, int(value))
        elif kind is str and not isinstance(value, str):
            raise ValueError(f"{key}={value!r} must be a string")


@cache
def _field_kinds(config_class: type) -> dict[str, tuple[type, bool]]:
    """{field: (its plain type, whether None is allowed)} of the bool/int/float/str fields of a dataclass."""
    hints = typing.get_type_hints(config_class)
    kinds = {}
    for item in fields(config_class):
        args = typing.get_args(hints[item.name])
        optional = type(None) in args
        kind = next((arg for arg in args if arg is not type(None)), None) if args else hints[item.name]
        if kind in (bool, int, float, str):
            kinds[item.name] = (kind, optional)
    return kinds


def check_choice(name: str, value: Any, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ValueError(f"{name}={value!r} is not a valid option; valid: {list(valid)}")


def check_range(name: str, value: float, low: float, high: float, include_high: bool = True) -> None:
    ok = low <= value <= high if include_high else low <= value < high
    if not ok:
        bracket = "]" if include_high else ")"
        raise ValueError(f"{name}={value!r} out of range [{low}, {high}{bracket}")


SSPO_SUCCESS_REWARDS = ("outcome", "env")


@dataclass(frozen=True)
class SSPOConfig:
    """3SPO (arXiv 2606.09961): score-driven step rewards over the state-score table, adaptive branching rollout.

    alpha, xi, zeta, epsilon: the state score S(s) (`credit.state_scores`). omega_k: decay of the novelty weight
        w = 0.5 * exp(-omega_k * N_tot(s_t)). g_max: most continuations per state, n(s) = ceil(g_max * S(s)).
    success_reward: R_success of a step: "outcome" (1 on the last step of a successful trajectory, else 0) or
        "env" (the raw env step reward, 10 x won in ALFWorld; the released code's choice).
    episode_w: weight of the episode channel A^E in A = episode_w * A^E + step_advantage_w * A^S (0: the released
        code's step-only advantage). The step channel's weight and the invalid-action penalty come from `gigpo`.
    max_states: cap of the state-score table (least recently updated states are evicted beyond it).
    branching: fork episodes at promising states (False: score-supervised credit only, one path per session).
    max_trajectories_per_group / max_env_steps_per_group: caps of one group's branching rollout, split evenly
        over its `rollout.n` sessions and spent depth first within a session (`agent/branching.py`); None env
        steps: rollout.n x env.max_steps (a GRPO group's worst case).
    """

    alpha: float = 50.0
    xi: float = 10.0
    zeta: float = 0.1
    omega_k: float = 0.1
    g_max: int = 8
    epsilon: float = 1e-6
    success_reward: str = "outcome"
    episode_w: float = 1.0
    max_states: int = 200_000
    branching: bool = True
    max_trajectories_per_group: int = 32
    max_env_steps_per_group: int | None = None
    gigpo: GiGPOConfig = field(default_factory=GiGPOConfig)

    def __post_init__(self) -> None:
        check_types(self, "sspo")
        check_choice("sspo.success_reward", self.success_reward, SSPO_SUCCESS_REWARDS)
        for name in ("alpha", "xi", "zeta", "omega_k", "epsilon", "episode_w"):
            check_range(f"sspo.{name}", getattr(self, name), 0.0, float("inf"))
        for name in ("g_max", "max_states", "max_trajectories_per_group"):
            if getattr(self, name) < 1:
                raise ValueError(f"sspo.{name} must be >= 1, got {getattr(self, name)}")
        if self.max_env_steps_per_group is not None and self.max_env_steps_per_group < 1:
            raise ValueError(f"sspo.max_env_steps_per_group must be >= 1 or null, got {self.max_env_steps_per_group}")


SSPO_KEYS = tuple(f.name for f in fields(SSPOConfig) if f.name != "gigpo")


def sspo_config_from(config: Any = None) -> SSPOConfig:
    """SSPOConfig from verl's `algorithm` section: `sspo` keys, plus gigpo keys from `gigpo` then from `sspo`."""
    if isinstance(config, SSPOConfig):
        return config
    return _with_gigpo(config, "sspo", SSPOConfig, SSPO_KEYS)
