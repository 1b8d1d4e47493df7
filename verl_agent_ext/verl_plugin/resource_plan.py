"""What a verl run of the recipe will need per GPU and in CPUs, against a node: the `--dry-run` resource plan.

Per GPU, a worst-case estimate (every row at full prompt + response length) of each phase of an iteration of
verl's colocated trainer (FSDP actor/reference/PRM and a vLLM or SGLang rollout on the same GPUs):

    generate       the rollout engine's share (gpu_memory_utilization x GPU) + what stays resident meanwhile
    old log-prob   actor parameters + fp32 logits of one log-prob micro-batch (+ entropy temporaries)
    ref log-prob   reference parameters + the same logits
    PRM update     iStar's PRM training (parameters, gradients, AdamW states, logits and their gradients)
    actor update   the actor's parameters, gradients, AdamW states, logits and their gradients, activations

FSDP shards parameters, gradients and optimizer states over all GPUs of the run (trainer.nnodes x
n_gpus_per_node), in `fsdp_config.model_dtype` (verl's default fp32: 4 bytes per parameter, AdamW 8).
`param_offload` / `optimizer_offload` move them to host memory outside their own phase (verl's engine does it
on entering and leaving train/eval mode); FSDP2's `offload_policy` keeps them on the host throughout. The
rollout engine sleeps outside generation (`free_cache_engine`, verl's default).

CPUs (Ray's `CPU` resource, what actors hold while they run): verl's resource pool holds `MAX_COLOCATE_COUNT`
CPUs per GPU, TransferQueue its controller and one per storage unit, and each agent-loop worker's env pool
`num_workers x cpus_per_worker` (Ray backend); actors without an explicit reservation (TaskRunner, agent-loop and
reward workers) need one free CPU to start. Too few and the env actors stay pending: every reset then waits
`call_timeout_s` (300 s), restarts and waits again, which looks like a hang; `check_ray_cpus` fails fast instead.

A node is described as `GPUSxMEMORY[GB][,CPUScpu]`, e.g. `2x80GB,32cpu` (`VAE_NODE` for `--dry-run`); without
one, a machine with NVIDIA GPUs is measured, and a machine without them gets the needs only. GB are 10^9 bytes
throughout (nvidia-smi's 81,559 MiB of an "80 GB" H100 are 85.5 GB: `2x80GB` is on the safe side).
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

GB = 1e9
MAX_COLOCATE_COUNT = 3
"""CPUs verl's resource pool reserves per GPU (`ResourcePoolManager.max_colocate_count` in verl 0.9)."""
HEADROOM_GB = 2.0
"""Per GPU, kept free for the CUDA context, NCCL buffers and allocator fragmentation."""
FP32_BYTES = 4
NODE_ENV = "VAE_NODE"
ASSUMED_GPU_GB = 80.0
"""GPU size the rollout engine's share is computed from when no node is given."""


@dataclass(frozen=True)
class ModelShape:
    """What the estimate needs of a model: parameter count, vocabulary, hidden size, layers."""

    params: float
    vocab: int
    hidden: int
    layers: int


KNOWN_MODELS = {
    "qwen2.5-0.5b": ModelShape(0.49e9, 151936, 896, 24),
    "qwen2.5-1.5b": ModelShape(1.54e9, 151936, 1536, 28),
    "qwen2.5-3b": ModelShape(3.09e9, 151936, 2048, 36),
    "qwen2.5-7b": ModelShape(7.62e9, 152064, 3584, 28),
    "qwen2.5-14b": ModelShape(14.8e9, 152064, 5120, 48),
    "qwen2.5-32b": ModelShape(32.8e9, 152064, 5120, 64),
    "smollm2-135m": ModelShape(0.135e9, 49152, 576, 30),
    "smollm2-360m": ModelShape(0.362e9, 49152, 960, 32),
}
"""Hub models by name (lower case, without organisation and -Instruct), for paths not on this machine."""


@dataclass(frozen=True)
class NodeSpec:
    """One node: GPUs, memory per GPU (GB), CPUs (None: unknown)."""

    gpus: int
    gpu_memory_gb: float
    cpus: int | None = None

    @classmethod
    def parse(cls, text: str) -> NodeSpec:
        """`2x80GB,32cpu` / `1x24` / `8x141GB,192cpu` -> NodeSpec."""
        match = re.fullmatch(r"\s*(\d+)\s*x\s*(\d+(?:\.\d+)?)\s*(?:gb)?\s*(?:,\s*(\d+)\s*cpus?)?\s*", text.lower())
        if match is None:
            raise ValueError(f"node description {text!r} is not GPUSxMEMORY[GB][,CPUScpu], e.g. 2x80GB,32cpu")
        cpus = int(match.group(3)) if match.group(3) else None
        return cls(int(match.group(1)), float(match.group(2)), cpus)

    @classmethod
    def detect(cls) -> NodeSpec | None:
        """`VAE_NODE` if set, else this machine's NVIDIA GPUs (asked of nvidia-smi: no CUDA context in this
        process, which would hold memory on GPU 0 for the whole run), else None."""
        if os.environ.get(NODE_ENV):
            return cls.parse(os.environ[NODE_ENV])
        import subprocess

        query = ["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits"]
        try:
            mib = [
                float(line) for line in subprocess.run(query, capture_output=True, text=True, timeout=30).stdout.split()
            ]
        except (OSError, ValueError, subprocess.TimeoutExpired):
            return None
        return cls(len(mib), min(mib) * 2**20 / GB, os.cpu_count()) if mib else None

    def __str__(self) -> str:
        cpus = f", {self.cpus} CPUs" if self.cpus is not None else ""
        return f"{self.gpus} x {self.gpu_memory_gb:g} GB{cpus}"


def model_shape(path: str) -> ModelShape | None:
    """From the config.json of a local folder or of the Hugging Face cache (nothing is downloaded), else by known
    name; None when none of them."""
    config_file = Path(os.path.expanduser(str(path))) / "config.json"
    if not config_file.is_file() and str(path).count("/") == 1:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(str(path), "config.json")
        config_file = Path(cached) if isinstance(cached, str) else config_file
    if config_file.is_file():
        hf = json.loads(config_file.read_text(encoding="utf-8"))
        hf = hf.get("text_config", hf)
        hidden, layers, vocab = hf["hidden_size"], hf["num_hidden_layers"], hf["vocab_size"]
        heads = hf.get("num_attention_heads", 1)
        kv = hf.get("num_key_value_heads", heads) * hidden // heads
        per_layer = hidden * (hidden + 2 * kv) + hidden * hidden + 3 * hidden * hf.get("intermediate_size", 4 * hidden)
        embeddings = vocab * hidden * (1 if hf.get("tie_word_embeddings", False) else 2)
        return ModelShape(float(layers * per_layer + embeddings), vocab, hidden, layers)
    name = str(path).rstrip("/").split("/")[-1].lower().removesuffix("-instruct")
    return KNOWN_MODELS.get(name)


@dataclass
class Line:
    """One row of the plan: a label, its GB per GPU, and how it was counted."""

    label: str
    gb: float
    detail: str = ""


@dataclass
class ResourcePlan:
    """Per-GPU memory by phase, CPUs by part, and what does not fit (see the module docstring)."""

    node: NodeSpec | None
    world: int
    components: list[Line] = field(default_factory=list)
    phases: list[Line] = field(default_factory=list)
    cpus: list[Line] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def peak_gb(self) -> float:
        return max((phase.gb for phase in self.phases), default=0.0)

    @property
    def cpus_needed(self) -> float:
        return sum(line.gb for line in self.cpus)

    @property
    def fits(self) -> bool:
        return not self.warnings

    def lines(self) -> list[str]:
        """The plan as text, one line each."""
        out = [f"resource plan ({self.world} GPU(s) in the run; node: {self.node or 'not given, set ' + NODE_ENV})"]
        out += [f"  per GPU  {line.label:<22} {line.gb:7.1f} GB  {line.detail}" for line in self.components]
        out += [f"  phase    {line.label:<22} {line.gb:7.1f} GB  {line.detail}" for line in self.phases]
        if self.phases:
            capacity = f" of {self.node.gpu_memory_gb:g} GB" if self.node else ""
            out.append(f"  peak per GPU {self.peak_gb:.1f} GB + {HEADROOM_GB:g} GB headroom{capacity}")
        out += [f"  CPUs     {line.label:<22} {line.gb:7.1f}     {line.detail}" for line in self.cpus]
        available = f" of {self.node.cpus}" if self.node and self.node.cpus is not None else ""
        out.append(f"  CPUs needed {self.cpus_needed:g}{available} (Ray CPU resource)")
        out += [f"  note: {note}" for note in self.notes]
        out += [f"WARNING: {warning}" for warning in self.warnings]
        if not self.fits:
            out.append("resource plan: WILL NOT FIT as configured (see WARNING)")
        elif self.node is None:
            out.append(f"resource plan: needs only (describe the node to compare: {NODE_ENV}=2x80GB,32cpu)")
        else:
            out.append("resource plan: fits")
        return out


def _get(config: Any, key: str, default: Any = None) -> Any:
    from omegaconf import OmegaConf

    value = OmegaConf.select(config, key, default=default)
    return default if value is None else value


def _bytes_per_param(config: Any, role: str) -> int:
    """Bytes of one parameter of `role` (actor, ref) in FSDP: its `fsdp_config.model_dtype`."""
    dtype = str(_get(config, f"actor_rollout_ref.{role}.fsdp_config.model_dtype", "fp32"))
    return FP32_BYTES if dtype in ("fp32", "float32") else 2


# ---------------------------------------------------------------------------------------------------------------
# CPUs


def cpu_needs(config: Any) -> list[Line]:
    """Ray CPUs the run holds, by part (see the module docstring)."""
    from verl_agent_ext.agent.config import EnvLoopConfig

    gpus = int(_get(config, "trainer.n_gpus_per_node", 1)) * int(_get(config, "trainer.nnodes", 1))
    units = int(_get(config, "transfer_queue.backend.SimpleStorage.num_data_storage_units", 8))
    agent_workers = int(_get(config, "actor_rollout_ref.rollout.agent.num_workers", 8))
    lines = [
        Line("verl resource pool", gpus * MAX_COLOCATE_COUNT, f"{gpus} GPU(s) x {MAX_COLOCATE_COUNT}"),
        Line("TransferQueue", 1 + units, f"controller + {units} storage unit(s)"),
        Line("actors starting", 1, "TaskRunner / agent-loop / reward workers need 1 free CPU to start"),
    ]
    if config.get("env") is not None:
        pool = EnvLoopConfig.from_mapping(config.get("env")).pool
        if pool.backend == "ray":
            workers = min(pool.num_workers or min(pool.num_envs, 4), pool.num_envs)
            lines.append(
                Line(
                    "env pool",
                    agent_workers * workers * pool.cpus_per_worker,
                    f"{agent_workers} agent-loop worker(s) x {workers} env actor(s) x {pool.cpus_per_worker:g}",
                )
            )
    return lines


def cpu_overrides_that_fit(config: Any, available: float) -> list[str]:
    """Overrides that bring the run's CPU needs within `available` (empty when nothing simple does)."""
    needs = {line.label: line.gb for line in cpu_needs(config)}
    fixed = sum(gb for label, gb in needs.items() if label not in ("env pool", "TransferQueue"))
    units = int(_get(config, "transfer_queue.backend.SimpleStorage.num_data_storage_units", 8))
    agent_workers = int(_get(config, "actor_rollout_ref.rollout.agent.num_workers", 8))
    suggestions = []
    for storage_units in sorted({min(units, 2), units}, reverse=True):
        budget = available - fixed - 1 - storage_units
        if budget <= 0:
            continue
        unit_key = "transfer_queue.backend.SimpleStorage.num_data_storage_units"
        unit_override = [] if storage_units == units else [f"{unit_key}={storage_units}"]
        if "env pool" not in needs:
            return unit_override
        per_actor = math.floor(100 * budget / (agent_workers * 2)) / 100
        if per_actor >= 0.05:
            return [*unit_override, "env.pool.num_workers=2", f"env.pool.cpus_per_worker={per_actor:g}"]
        suggestions = [*unit_override, "env.pool.backend=inprocess"]
        break
    if not suggestions and available - fixed - 2 > 0:
        suggestions = ["transfer_queue.backend.SimpleStorage.num_data_storage_units=1", "env.pool.backend=inprocess"]
    return suggestions


def check_ray_cpus(config: Any, available: float | None = None) -> None:
    """Raise when Ray has fewer CPUs than the run holds.

    available: Ray's total CPU resource. None: ask the running Ray, only from inside a Ray actor (verl's
    TaskRunner, where verl builds its trainer); a driver process (a test, a notebook) with its own Ray is not the
    run's cluster, and nothing is checked there.
    """
    if available is None:
        import ray

        if not ray.is_initialized() or ray.get_runtime_context().get_actor_id() is None:
            return
        available = float(ray.cluster_resources().get("CPU", 0.0))
    lines = cpu_needs(config)
    needed = sum(line.gb for line in lines)
    if needed <= available:
        return
    parts = "; ".join(f"{line.label} {line.gb:g} ({line.detail})" for line in lines)
    fix = cpu_overrides_that_fit(config, available)
    advice = f"add the overrides {' '.join(fix)}" if fix else "give Ray more CPUs (ray_kwargs.ray_init.num_cpus)"
    raise RuntimeError(
        f"Ray has {available:g} CPUs, this run holds {needed:g}: {parts}. With fewer, the env actors stay pending "
        f"and every episode waits for them (300 s per try) before failing. To fit {available:g} CPUs, {advice}."
    )


# ---------------------------------------------------------------------------------------------------------------
# GPU memory


def _tokens(config: Any, dynamic_key: str, micro_key: str) -> tuple[int, str]:
    """Tokens of one micro-batch at worst (all rows at full length) and how it was counted."""
    length = int(_get(config, "data.max_prompt_length", 1024)) + int(_get(config, "data.max_response_length", 1024))
    if _get(config, "actor_rollout_ref.actor.use_dynamic_bsz", False):
        tokens = int(_get(config, dynamic_key, 16384))
        return tokens, f"{tokens} tokens ({dynamic_key.split('.')[-1]})"
    micro = int(_get(config, micro_key, 1))
    return micro * length, f"{micro} rows x {length} tokens"


def plan_resources(config: Any, node: NodeSpec | None) -> ResourcePlan:
    """The resource plan of a composed, resolved recipe/verl config on `node` (see the module docstring)."""
    from verl.trainer.ppo.utils import need_reference_policy

    from verl_agent_ext.verl_plugin.istar_prm import uses_istar

    world = int(_get(config, "trainer.n_gpus_per_node", 1)) * int(_get(config, "trainer.nnodes", 1))
    plan = ResourcePlan(node=node, world=world, cpus=cpu_needs(config))
    gpus_per_node = int(_get(config, "trainer.n_gpus_per_node", 1))
    if node is not None and node.gpus < gpus_per_node:
        plan.warnings.append(
            f"the run asks for trainer.n_gpus_per_node={gpus_per_node}, the node has {node.gpus}: "
            f"set trainer.n_gpus_per_node={node.gpus} (and check the memory below)"
        )
    if node is not None and node.cpus is not None and plan.cpus_needed > node.cpus:
        fix = cpu_overrides_that_fit(config, node.cpus)
        plan.warnings.append(
            f"the run holds {plan.cpus_needed:g} CPUs, the node has {node.cpus}: "
            + (f"add {' '.join(fix)}" if fix else "use a node with more CPUs")
        )
    if str(_get(config, "trainer.device", "cuda")) == "cpu":
        plan.notes.append("trainer.device=cpu: no GPU memory to plan")
        return plan
    model_path = str(_get(config, "actor_rollout_ref.model.path", ""))
    shape = model_shape(model_path)
    if shape is None:
        plan.warnings.append(
            f"the size of {model_path} is unknown here (no local config.json, not in KNOWN_MODELS): GPU memory "
            "not estimated"
        )
        return plan
    _plan_gpu_memory(config, shape, plan, need_reference_policy(config), uses_istar(config))
    if node is not None and plan.peak_gb + HEADROOM_GB > node.gpu_memory_gb:
        worst = max(plan.phases, key=lambda phase: phase.gb)
        plan.warnings.append(
            f"{worst.label} needs about {worst.gb:.1f} GB per GPU (+{HEADROOM_GB:g} GB headroom), the node's GPUs "
            f"have {node.gpu_memory_gb:g} GB: use more GPUs (trainer.n_gpus_per_node), offload "
            "(actor_rollout_ref.actor.fsdp_config.param_offload/optimizer_offload=True), smaller micro-batches "
            "(ppo_micro_batch_size_per_gpu, log_prob_micro_batch_size_per_gpu), a lower "
            "rollout.gpu_memory_utilization, or a smaller model"
        )
    return plan


def _plan_gpu_memory(config: Any, shape: ModelShape, plan: ResourcePlan, use_ref: bool, istar: bool) -> None:
    world = plan.world
    lora = int(_get(config, "actor_rollout_ref.model.lora_rank", 0)) > 0
    actor = "actor_rollout_ref.actor"
    pb = _bytes_per_param(config, "actor")
    params = shape.params * pb / world / GB
    trained = 0.0 if lora else params
    grads, optimizer = trained, 2 * trained
    fsdp2 = _get(config, f"{actor}.strategy") == "fsdp2"
    policy = fsdp2 and bool(_get(config, f"{actor}.fsdp_config.offload_policy", False))  # FSDP2 only
    param_off = policy or bool(_get(config, f"{actor}.fsdp_config.param_offload", False))
    optim_off = policy or bool(_get(config, f"{actor}.fsdp_config.optimizer_offload", False))
    flags = f"param_offload={param_off} optimizer_offload={optim_off}" + (" (FSDP2 offload_policy)" if policy else "")
    plan.components.append(Line("actor parameters", params, f"{shape.params / 1e9:.2f}B x {pb} B / {world} GPUs"))
    plan.components.append(Line("actor gradients", grads, "LoRA: adapter only" if lora else "same dtype"))
    plan.components.append(Line("actor AdamW states", optimizer, flags))
    resident_actor = (0.0 if param_off else params) + (0.0 if optim_off else optimizer)
    in_update = 0.0 if policy else params + grads + optimizer

    ref_params = 0.0
    resident_ref = 0.0
    if use_ref and not lora:
        ref_params = shape.params * _bytes_per_param(config, "ref") / world / GB
        ref_off = bool(_get(config, "actor_rollout_ref.ref.fsdp_config.param_offload", False))
        resident_ref = 0.0 if ref_off else ref_params
        plan.components.append(Line("reference parameters", ref_params, f"param_offload={ref_off}"))

    resident_prm, prm_update, prm_offloaded = 0.0, 0.0, 0.0
    if istar:
        from verl_agent_ext.credit.istar import istar_config_from

        prm_offload = istar_config_from(config.algorithm).prm_offload
        prm = params + grads + optimizer
        resident_prm = 0.0 if prm_offload or policy else params + optimizer
        prm_update = 0.0 if policy else prm
        prm_offloaded = params + optimizer if prm_offload and not policy else 0.0
        plan.components.append(
            Line("iStar PRM states", prm, f"parameters + gradients + AdamW; offloaded when idle: {prm_offload}")
        )

    utilization = float(_get(config, "actor_rollout_ref.rollout.gpu_memory_utilization", 0.5))
    capacity = plan.node.gpu_memory_gb if plan.node is not None else ASSUMED_GPU_GB
    rollout = utilization * capacity
    assumed = "" if plan.node is not None else " assumed"
    plan.components.append(
        Line("rollout engine", rollout, f"gpu_memory_utilization {utilization:g} x {capacity:g} GB{assumed}")
    )

    logits_per_token = shape.vocab * FP32_BYTES / GB
    lp_tokens, lp_detail = _tokens(
        config,
        "actor_rollout_ref.rollout.log_prob_max_token_len_per_gpu",
        "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu",
    )
    if _get(config, f"{actor}.entropy_from_logits_with_chunking", False):
        chunk = int(_get(config, f"{actor}.entropy_from_logits_chunk_size", 2048))
        entropy = 2 * min(chunk, lp_tokens) * logits_per_token
        entropy_detail = f"entropy chunked by {chunk}"
    else:
        entropy = lp_tokens * logits_per_token
        entropy_detail = "entropy unchunked: a second full fp32 copy (entropy_from_logits_with_chunking=True avoids it)"
    log_prob = lp_tokens * logits_per_token
    up_tokens, up_detail = _tokens(
        config, f"{actor}.ppo_max_token_len_per_gpu", f"{actor}.ppo_micro_batch_size_per_gpu"
    )
    activations = up_tokens * shape.hidden * shape.layers * 2 / GB
    update_temp = 2 * up_tokens * logits_per_token + activations

    others = resident_ref + resident_prm
    plan.phases.append(Line("generate", rollout + resident_actor + others, "rollout share + resident states"))
    plan.phases.append(
        Line(
            "old log-prob",
            (params if not policy else 0.0) + (0.0 if optim_off else optimizer) + others + log_prob + entropy,
            f"fp32 logits of {lp_detail}, {entropy_detail}",
        )
    )
    if use_ref and not lora:
        plan.phases.append(Line("ref log-prob", resident_actor + ref_params + resident_prm + log_prob, lp_detail))
    if istar:
        plan.phases.append(
            Line(
                "PRM update", resident_actor + resident_ref + prm_update + update_temp, f"logits + grads of {up_detail}"
            )
        )
    plan.phases.append(
        Line(
            "actor update",
            in_update + others + update_temp,
            f"fp32 logits + their gradients of {up_detail}, checkpointed activations",
        )
    )
    offloaded = (params if param_off else 0.0) + (optimizer if optim_off else 0.0) + prm_offloaded
    if offloaded:
        plan.notes.append(f"host memory for offloaded states: about {offloaded * world:.0f} GB per run")
