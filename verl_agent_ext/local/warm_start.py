"""Supervised warm start: train the LoRA adapter on expert demonstrations before RL, on a CPU or one GPU.

    result = warm_start(WarmStartConfig(data="runs/alfworld-expert", steps=300))
    result.adapter_dir      # a plain PEFT adapter folder: `train-local --init-adapter DIR`, or verl's
                            # `actor_rollout_ref.model.lora_adapter_path=DIR`

The rows are `verl-agent-ext expert-data` output. Each becomes the exact token sequence the agent loop trains on:
prompt ids = chat template over the step's user message (generation prompt included) + the prefilled
`response_prefix`; response ids = the rest of the tagged answer + the end-of-turn token. The loss is the mean
negative log-likelihood of the response tokens (the trainer's forward pass: `LocalTrainer._forward` at
temperature 1). Afterwards the policy plays held-out games (the data's validation split of games) through the
same agent loop, and the success rate is reported.

Results are cached under `$VERL_AGENT_EXT_CACHE/adapters/<key>/`, key = hash of (model, training rows, settings):
a second run with the same inputs loads the adapter and its recorded results without training.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from verl_agent_ext.policy.model import DEFAULT_MODEL, cache_dir

RESULT_FILE = "warm_start.json"


@dataclass(frozen=True)
class WarmStartConfig:
    """Settings of one warm start (all of them but `out` enter the cache key).

    data: an `expert-data` folder (train.parquet, info.json). steps / batch_size / lr: AdamW steps on batches of
    step rows (sampled without replacement, epoch by epoch). eval_episodes: held-out games played afterwards (one
    episode each, `eval_max_steps` steps, `eval_temperature`, 0 = greedy).
    """

    data: str
    steps: int = 300
    batch_size: int = 8
    lr: float = 1e-3
    seed: int = 0
    model: str = DEFAULT_MODEL
    lora_rank: int = 8
    lora_alpha: int = 16
    prompt_length: int = 512
    response_prefix: str = "<action>"
    eval_episodes: int = 24
    eval_task_types: str = ""  # comma-separated ALFWorld task types of the held-out games ("" = the data's)
    eval_max_steps: int = 10
    eval_temperature: float = 1.0
    num_threads: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "prompt_length", "eval_max_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


@dataclass
class WarmStartResult:
    adapter_dir: Path
    record: dict[str, Any]  # settings, losses, held-out success (the folder's warm_start.json)
    cached: bool


def cache_key(config: WarmStartConfig) -> str:
    """Hash of the model, the training rows (file bytes) and every setting."""
    digest = hashlib.sha256((Path(config.data) / "train.parquet").read_bytes()).hexdigest()
    settings = {**asdict(config), "data": digest}
    settings.pop("num_threads")
    settings.pop("device")
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def adapter_cache_dir(config: WarmStartConfig) -> Path:
    return cache_dir().parent / "adapters" / f"{Path(config.model).name}-{cache_key(config)}"


def sft_examples(messages_rows: list[list[dict]], tokenizer, response_prefix: str, prompt_length: int) -> list:
    """(prompt ids, response ids) per row, as the agent loop would see and write them.

    messages_rows: per row [user message, assistant message]; the assistant text must start with the prefix.
    Over-long prompts keep head and tail like the agent loop's window (`agent.prompt.keep_head_and_tail`).
    """
    from verl_agent_ext.agent.prompt import keep_head_and_tail

    prefix_ids = tokenizer.encode(response_prefix, add_special_tokens=False) if response_prefix else []
    examples = []
    for messages in messages_rows:
        user, answer = messages[0], messages[-1]["content"]
        if not answer.startswith(response_prefix):
            raise ValueError(f"answer {answer!r} does not start with the response prefix {response_prefix!r}")
        prompt = tokenizer.apply_chat_template([user], add_generation_prompt=True, tokenize=True, return_dict=False)
        prompt = list(prompt) + prefix_ids
        if len(prompt) > prompt_length:
            prompt = keep_head_and_tail(prompt, prompt_length)
        response = tokenizer.encode(answer[len(response_prefix) :], add_special_tokens=False)
        examples.append((prompt, response + [tokenizer.eos_token_id]))
    return examples


def example_rows(examples: list):
    """`StepRows` of SFT examples (what `LocalTrainer._forward` reads); rewards and metadata unused."""
    import torch

    from verl_agent_ext.local.batch import StepRows

    width = max(len(response) for _, response in examples)
    responses = torch.zeros((len(examples), width), dtype=torch.long)
    mask = torch.zeros_like(responses)
    for row, (_, response) in enumerate(examples):
        responses[row, : len(response)] = torch.tensor(response)
        mask[row, : len(response)] = 1
    return StepRows(
        prompts=[prompt for prompt, _ in examples],
        responses=responses,
        response_mask=mask,
        token_level_rewards=torch.zeros(responses.shape),
        non_tensor_batch={},
    )


def trainer_config(config: WarmStartConfig, info: dict[str, Any], out_dir: Path):
    """The `LocalTrainConfig` whose model, LoRA and prompts the warm start trains and evaluates."""
    from verl_agent_ext.local.config import LocalTrainConfig

    settings = info["settings"]
    if settings["env"] != "alfworld":
        raise ValueError(f"the local warm start evaluates on ALFWorld; this data is {settings['env']!r}")
    return LocalTrainConfig(
        out_dir=str(out_dir),
        seed=config.seed,
        resume=False,
        device=config.device,
        num_threads=config.num_threads,
        model=config.model,
        lora_rank=config.lora_rank,
        lora_alpha=config.lora_alpha,
        games_per_type=settings["per_type"],
        games_seed=settings["seed"],
        task_types=config.eval_task_types or settings["task_types"],
        groups_per_iter=8,
        group_size=1,
        max_steps=config.eval_max_steps,
        history_length=settings["history_length"],
        max_actions=settings["max_actions"],
        prompt_template=settings["prompt_template"],
        response_prefix=config.response_prefix,
        prompt_length=config.prompt_length,
        temperature=1.0,  # the SFT loss reads log-probs of softmax(logits / temperature)
    )


def warm_start(config: WarmStartConfig, log=print) -> WarmStartResult:
    """Train (or load from the cache) the warm-start adapter; see the module docstring."""
    import pandas as pd
    import torch

    from verl_agent_ext.agent.expert_data_cli import read_info
    from verl_agent_ext.envs.play_cli import interleave_by_type
    from verl_agent_ext.local.trainer import LocalTrainer, load_tasks

    info = read_info(config.data)
    target = adapter_cache_dir(config)
    if (target / RESULT_FILE).is_file():
        record = json.loads((target / RESULT_FILE).read_text())
        log(f"[warm-start] cached adapter {target} (same model, data and settings)")
        return WarmStartResult(target, record, cached=True)

    work = target.with_name(target.name + f".tmp{random.getrandbits(32):08x}")
    trainer = LocalTrainer(trainer_config(config, info, work), log=log)
    try:
        rows = pd.read_parquet(Path(config.data) / "train.parquet")
        messages = [[dict(m) for m in row] for row in rows["messages"]]
        examples = sft_examples(messages, trainer.tokenizer, config.response_prefix, config.prompt_length)
        started = time.perf_counter()
        losses = supervised_steps(trainer, examples, config, log)
        train_seconds = time.perf_counter() - started

        trainer.model.save_pretrained(work)
        started = time.perf_counter()
        evaluation = {}
        if config.eval_episodes:
            heldout = interleave_by_type(load_tasks(trainer.config, "eval_in_distribution"))
            evaluation = trainer.evaluate(heldout[: config.eval_episodes], config.eval_temperature)
        eval_seconds = time.perf_counter() - started
        record = {
            "settings": asdict(config),
            "data_info": info,
            "train_rows": len(examples),
            "sft_loss_first": losses[0],
            "sft_loss_last": losses[-1],
            "sft_loss_curve": losses,
            "heldout": evaluation,
            "train_seconds": train_seconds,
            "eval_seconds": eval_seconds,
            "torch_threads": torch.get_num_threads(),
        }
        (work / RESULT_FILE).write_text(json.dumps(record, indent=2))
        for name in ("metrics.jsonl", "learning_curve.png"):
            (work / name).unlink(missing_ok=True)
        shutil.rmtree(target, ignore_errors=True)
        work.rename(target)  # atomic: a concurrent run never reads a half-written adapter
    finally:
        trainer.close()
        shutil.rmtree(work, ignore_errors=True)
    return WarmStartResult(target, record, cached=False)


def supervised_steps(trainer, examples: list, config: WarmStartConfig, log) -> list[float]:
    """`config.steps` AdamW steps of mean response-token NLL on the trainer's model; loss per 10% of steps.

    Each batch runs in micro-batches of the trainer's `micro_batch_size` (memory), normalised by the batch's
    token count, so the gradient is that of the whole batch.
    """
    import torch

    rng = random.Random(config.seed)
    optimizer = torch.optim.AdamW(trainer.trainable, lr=config.lr, weight_decay=0.0)
    order: list[int] = []
    window: list[float] = []
    curve: list[float] = []
    report_every = max(1, config.steps // 10)
    trainer.model.train()
    for step in range(1, config.steps + 1):
        if len(order) < config.batch_size:
            order += rng.sample(range(len(examples)), len(examples))
        batch, order = order[: config.batch_size], order[config.batch_size :]
        rows = example_rows([examples[i] for i in batch])
        tokens = rows.response_mask.sum()
        optimizer.zero_grad(set_to_none=True)
        loss = 0.0
        for start in range(0, len(batch), trainer.config.micro_batch_size):  # gradients accumulate
            index = list(range(start, min(start + trainer.config.micro_batch_size, len(batch))))
            log_probs, _ = trainer._forward(rows, index)  # (micro, R), 0 on padding
            micro_loss = -log_probs.sum() / tokens.to(log_probs.device)  # token mean over the whole batch
            micro_loss.backward()
            loss += micro_loss.item()
        torch.nn.utils.clip_grad_norm_(trainer.trainable, trainer.config.grad_clip)
        optimizer.step()
        window.append(loss)
        if step % report_every == 0 or step == config.steps:
            curve.append(float(sum(window) / len(window)))
            window = []
            log(f"[warm-start] step {step}/{config.steps}: SFT loss {curve[-1]:.4f}")
    return curve
