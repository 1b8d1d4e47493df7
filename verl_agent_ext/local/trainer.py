"""Single-process SCPO/GiGPO/GRPO training: verl's steps 2-4 in one process, on a CPU or one GPU.

One iteration, read top to bottom in `LocalTrainer.train_iteration`:
  1. rollout: `groups_per_iter` tasks x `group_size` episodes through the project's verl agent loop
     (`EnvAgentLoop`, the same code verl's workers run) against `HFServerManager` (verl's server-manager interface
     on a HF model); every environment step becomes one training row.
  2. credit: advantages from the registered verl estimator `estimator` (gigpo/scpo get the step metadata,
     anything else is called with verl's standard arguments, as verl's `compute_advantage` does).
  3. update: `ppo_epochs` passes over the rows in micro-batches; the loss is verl's policy loss / KL / aggregation
     (`verl_agent_ext.local.loss`), gradients accumulate to one optimizer step per mini-batch (all rows).
Each iteration appends a metrics record (JSONL), prints a table row, redraws the learning curve and checkpoints.
Ctrl-C before the optimizer step abandons the iteration (the weights are still those of the last completed one),
saves a checkpoint and exits; `resume=True` continues from it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import signal
import sys
import time
from pathlib import Path
from typing import Any
from uuid import uuid4

import numpy as np
import torch

from verl_agent_ext.local.advantages import ZERO_ADVANTAGE, compute_advantages, estimator_fn
from verl_agent_ext.local.batch import StepRows, step_rows
from verl_agent_ext.local.checkpoint import find_checkpoint, load_checkpoint, save_checkpoint
from verl_agent_ext.local.config import LocalTrainConfig, actor_config, compose_verl_config
from verl_agent_ext.local.hf_server import HFServerManager
from verl_agent_ext.local.loss import actor_loss, set_global_batch_info
from verl_agent_ext.local.metrics import MetricsLog, plot_learning_curve, table_header, table_row
from verl_agent_ext.local.model import add_lora, load_policy

logger = logging.getLogger(__name__)


class Interrupted(Exception):
    """Raised when the run stopped on SIGINT after saving its checkpoint."""


class LocalTrainer:
    """Builds everything a run needs from a `LocalTrainConfig`; `train()` runs the remaining iterations."""

    def __init__(self, config: LocalTrainConfig, log=print, progress=None):
        """log: where the table and notices go; progress: where phase progress lines go (default: stderr)."""
        self.config = config
        self.log = log
        self.progress = progress or _stderr_progress
        # The agent loop is built outside a verl worker without the HF model_type; verl then warns once per
        # episode that it uses its default token builder (the right one for this chat template).
        logging.getLogger("verl.utils.tokenizer.continuous_token_wiring").setLevel(logging.ERROR)
        self.out_dir = Path(config.out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        _seed_everything(config.seed)
        if config.num_threads > 0:
            torch.set_num_threads(config.num_threads)
        self.device = "cuda" if config.device == "auto" and torch.cuda.is_available() else config.device
        self.device = "cpu" if self.device == "auto" else self.device

        estimator_fn(config.estimator)  # fail fast: unknown names raise listing the registered ones
        self.verl_config = compose_verl_config(config)
        self.actor_config = actor_config(self.verl_config)

        self.model, self.tokenizer = load_policy(config.model, self.device)
        if config.lora_rank > 0:
            self.model = add_lora(self.model, config.lora_rank, config.lora_alpha)
        self.trainable = [p for p in self.model.parameters() if p.requires_grad]
        optim = self.verl_config.actor_rollout_ref.actor.optim
        self.optimizer = torch.optim.AdamW(
            self.trainable, lr=config.lr, betas=tuple(optim.betas), weight_decay=optim.weight_decay
        )
        self.server = HFServerManager(
            self.model,
            self.tokenizer,
            response_length=config.response_length,
            max_model_len=config.prompt_length + config.response_length,
            max_batch_size=config.groups_per_iter * config.group_size,
            garbage_tokens=config.garbage_tokens,
        )
        self.tasks = _load_tasks(config)
        self.env_pool = _make_env_pool(config)
        self.metrics = MetricsLog(self.out_dir / "metrics.jsonl")
        self.iteration = 0  # completed iterations
        self._protected = False  # True from the optimizer step to the end of the iteration
        self._stop_requested = False
        saved = find_checkpoint(self.out_dir / "checkpoint") if config.resume else None
        if saved is not None:
            self.iteration = load_checkpoint(saved, self.model, self.optimizer)
            self.metrics.truncate_after(self.iteration)
            self.log(f"[train-local] resumed from {saved} after iteration {self.iteration}")
        elif not config.resume:
            self.metrics.truncate_after(0)

    # -- the loop ----------------------------------------------------------------------------------------------

    def train(self) -> list[dict[str, Any]]:
        """Run iterations up to `config.iterations`; returns all metrics records of the run so far."""
        previous = signal.signal(signal.SIGINT, self._on_sigint)
        try:
            if self.iteration < self.config.iterations:
                self.log(table_header())
            while self.iteration < self.config.iterations:
                try:
                    record = self.train_iteration(self.iteration + 1)
                except KeyboardInterrupt:
                    self._save()
                    raise Interrupted(
                        f"interrupted during iteration {self.iteration + 1}; checkpoint of iteration "
                        f"{self.iteration} saved in {self.out_dir / 'checkpoint'} (run again to resume)"
                    ) from None
                self.log(table_row(record))
                if self._stop_requested:
                    self._save()
                    raise Interrupted(
                        f"interrupted; checkpoint of iteration {self.iteration} saved in {self.out_dir / 'checkpoint'}"
                    )
        finally:
            signal.signal(signal.SIGINT, previous)
        return self.metrics.read()

    def train_iteration(self, iteration: int) -> dict[str, Any]:
        """Rollout, credit, update, log, checkpoint: one iteration (see the module docstring)."""
        started = time.perf_counter()
        record: dict[str, Any] = {"iteration": iteration}

        episodes = self.config.groups_per_iter * self.config.group_size
        self.progress(f"[iter {iteration}] rollout: {episodes} episodes of <= {self.config.max_steps} steps ...")
        rows, rollout_metrics = self.rollout(iteration)
        record.update(rollout_metrics)

        self.progress(f"[iter {iteration}] credit ({self.config.estimator}) over {len(rows)} step rows ...")
        credit_started = time.perf_counter()
        advantages, credit_metrics = self.compute_advantages(rows)
        record.update(credit_metrics)
        record["time/credit"] = time.perf_counter() - credit_started

        self.progress(f"[iter {iteration}] update ...")
        update_started = time.perf_counter()
        try:
            record.update(self.update(rows, advantages))  # protects itself from its optimizer step on
            record["time/update"] = time.perf_counter() - update_started
            record["time/iteration"] = time.perf_counter() - started
            self.iteration = iteration
            self.metrics.append(record)
            title = f"{self.config.estimator} / {self.config.model}"
            plot_learning_curve(self.metrics.read(), self.out_dir / "learning_curve.png", title)
            if iteration % self.config.save_every == 0 or iteration == self.config.iterations:
                self._save()
        finally:
            self._protected = False
        return record

    # -- 1. rollout --------------------------------------------------------------------------------------------

    def rollout(self, iteration: int) -> tuple[StepRows, dict[str, float]]:
        """Play `groups_per_iter` tasks x `group_size` episodes concurrently; one row per environment step."""
        from verl_agent_ext.agent.env_agent_loop import build_agent_loop

        config = self.config
        rng = random.Random(config.seed * 1_000_003 + iteration)
        tasks = (
            rng.sample(self.tasks, k=config.groups_per_iter)
            if len(self.tasks) >= config.groups_per_iter
            else [rng.choice(self.tasks) for _ in range(config.groups_per_iter)]
        )
        sampling_params = {
            "temperature": config.temperature,
            "top_p": config.top_p,
            "top_k": -1,
            "logprobs": True,
        }

        finished: list[bool] = []

        async def play(task, uid: str):
            loop = build_agent_loop(self.verl_config, self.server, self.tokenizer, env_pools=[self.env_pool])
            row = {"env_name": task.env, "task_id": task.task_id, "task_type": task.task_type, "split": task.split}
            try:
                outputs = await loop.run(dict(sampling_params), **row)
            finally:
                self.server.target_batch_size -= 1  # one episode fewer will send requests
            finished.append(outputs[-1].extra_fields["episode_success"])
            self.progress(
                f"[iter {iteration}]   episode {len(finished)}/{len(tasks) * config.group_size}: "
                f"{len(outputs)} steps, {'won' if finished[-1] else 'not won'}"
            )
            return uid, outputs

        async def play_all():
            groups = [(task, uuid4().hex) for task in tasks]
            return await asyncio.gather(*(play(task, uid) for task, uid in groups for _ in range(config.group_size)))

        generation_before = self.server.stats["generate_seconds"]
        tokens_before = self.server.stats["generated_tokens"]
        started = time.perf_counter()
        self.server.target_batch_size = len(tasks) * config.group_size
        episodes = asyncio.run(play_all())
        wall = time.perf_counter() - started
        generation = self.server.stats["generate_seconds"] - generation_before

        outputs = [output for _, episode in episodes for output in episode]
        uids = [uid for uid, episode in episodes for _ in episode]
        rows = step_rows(outputs, uids)
        finals = [episode[-1].extra_fields for _, episode in episodes]
        valid = rows.non_tensor_batch["is_action_valid"].astype(bool)
        metrics = {
            "rollout/episodes": float(len(episodes)),
            "rollout/steps": float(len(rows)),
            "rollout/success_rate": float(np.mean([bool(f["episode_success"]) for f in finals])),
            "rollout/invalid_action_rate": float(1.0 - valid.mean()),
            "rollout/episode_length": float(np.mean([len(episode) for _, episode in episodes])),
            "rollout/response_tokens_mean": float(rows.response_mask.sum(-1).float().mean()),
            "rollout/generated_tokens": float(self.server.stats["generated_tokens"] - tokens_before),
            "time/generation": generation,
            "time/environment": wall - generation,
            "time/rollout": wall,
        }
        for task_type in sorted({f["task_type"] for f in finals}):
            wins = [bool(f["episode_success"]) for f in finals if f["task_type"] == task_type]
            metrics[f"rollout/success_rate/{task_type}"] = float(np.mean(wins))
        return rows, metrics

    # -- 2. credit ---------------------------------------------------------------------------------------------

    def compute_advantages(self, rows: StepRows) -> tuple[torch.Tensor, dict[str, float]]:
        """(rows, R) advantages from the configured estimator, and its diagnostics."""
        return compute_advantages(self.config.estimator, rows, self.verl_config.algorithm)

    # -- 3. update ---------------------------------------------------------------------------------------------

    def update(self, rows: StepRows, advantages: torch.Tensor) -> dict[str, float]:
        """`ppo_epochs` passes of micro-batches; one optimizer step per pass (all rows form one mini-batch).

        With one pass, the data's policy is the current one, so old_log_prob = log_prob.detach() (verl's on-policy
        shortcut); otherwise old log-probs are computed first. Rows whose advantage is zero on every token
        (|A| <= ZERO_ADVANTAGE) are skipped when neither KL nor entropy terms are on: their loss and gradient are
        zero, and verl's aggregation divides by the token count of the whole mini-batch (`global_batch_info`).
        """
        config, actor = self.config, self.actor_config
        set_global_batch_info(actor, int(rows.response_mask.sum()), len(rows))
        needs_all_rows = actor.use_kl_loss or actor.entropy_coeff != 0
        # max |A| below ZERO_ADVANTAGE is float noise of an all-equal group (e.g. every step invalid)
        active = [i for i in range(len(rows)) if needs_all_rows or advantages[i].abs().max() > ZERO_ADVANTAGE]
        on_policy = config.ppo_epochs == 1
        old_log_probs = None if on_policy else self._log_probs(rows, range(len(rows)))
        ref_log_probs = None
        if actor.use_kl_loss:
            with self.model.disable_adapter():
                ref_log_probs = self._log_probs(rows, range(len(rows)))

        self.model.train()
        totals: dict[str, float] = {"actor/loss": 0.0}
        sums: dict[str, list[float]] = {}
        grad_norm = 0.0
        for _ in range(config.ppo_epochs):
            self.optimizer.zero_grad(set_to_none=True)
            for start in range(0, len(active), config.micro_batch_size):
                index = active[start : start + config.micro_batch_size]
                log_prob, entropy = self._forward(rows, index, with_entropy=actor.entropy_coeff != 0)
                old = log_prob.detach() if on_policy else old_log_probs[index]
                loss, metrics = actor_loss(
                    actor,
                    log_prob=log_prob,
                    old_log_prob=old,
                    advantages=advantages[index].to(log_prob.device),
                    response_mask=rows.response_mask[index].to(log_prob.device),
                    ref_log_prob=None if ref_log_probs is None else ref_log_probs[index],
                    entropy=entropy,
                )
                loss.backward()
                totals["actor/loss"] += loss.item()
                for key, value in metrics.items():
                    sums.setdefault(key, []).append(value)
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self.trainable, config.grad_clip))
            if not np.isfinite(grad_norm):
                logger.warning("non-finite gradient norm %s: optimizer step skipped", grad_norm)
                continue
            self._protected = True  # the weights change now: a Ctrl-C waits for the end of the iteration
            self.optimizer.step()
        totals["actor/loss"] /= config.ppo_epochs
        totals["actor/grad_norm"] = grad_norm
        totals["actor/trained_rows"] = float(len(active))
        for key, values in sums.items():
            if key.endswith("_loss"):  # partial sums over micro-batches (global normalisation): add, per epoch
                totals[key] = float(np.sum(values)) / config.ppo_epochs
            else:  # ratios of each micro-batch: average
                totals[key] = float(np.mean(values))
        return totals

    @torch.no_grad()
    def _log_probs(self, rows: StepRows, index) -> torch.Tensor:
        """(len(index), R) log-probs of the response tokens under the current model, in micro-batches, no grad."""
        index = list(index)
        chunks = [
            index[i : i + self.config.micro_batch_size] for i in range(0, len(index), self.config.micro_batch_size)
        ]
        return torch.cat([self._forward(rows, chunk)[0] for chunk in chunks])

    def _forward(
        self, rows: StepRows, index: list[int], with_entropy: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One forward pass over prompt + response of rows `index`: prompts left-padded, responses right-padded.

        The prompts end at the same column, so only the response positions go through the LM head
        (`logits_to_keep`); position ids follow the attention mask, as in generation.
        Returns log-probs of the response tokens under softmax(logits / temperature) (verl's actor convention)
        and, when asked, the per-token entropy of that distribution; both (len(index), R), 0 on padding.
        """
        width_p = max(len(rows.prompts[i]) for i in index)
        width_r = rows.responses.shape[1]
        input_ids = torch.full((len(index), width_p + width_r), self.tokenizer.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros_like(input_ids)
        for row, i in enumerate(index):
            prompt = rows.prompts[i]
            input_ids[row, width_p - len(prompt) : width_p] = torch.tensor(prompt, dtype=torch.long)
            input_ids[row, width_p:] = rows.responses[i]
            attention_mask[row, width_p - len(prompt) : width_p] = 1
            attention_mask[row, width_p:] = rows.response_mask[i]
        position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
        logits = self.model(
            input_ids=input_ids.to(self.device),
            attention_mask=attention_mask.to(self.device),
            position_ids=position_ids.to(self.device),
            logits_to_keep=width_r + 1,
        ).logits  # (b, R + 1, vocab): positions width_p - 1 ... width_p + R - 1
        picked = logits[:, :width_r]  # position width_p - 1 + j predicts response token j
        if self.config.temperature > 0:
            picked = picked / self.config.temperature
        log_probs = torch.log_softmax(picked.float(), dim=-1)  # (b, R, vocab)
        tokens = rows.responses[index].to(self.device).unsqueeze(-1)
        mask = rows.response_mask[index].to(self.device)
        token_log_probs = log_probs.gather(-1, tokens).squeeze(-1) * mask
        entropy = -(log_probs.exp() * log_probs).sum(-1) * mask if with_entropy else None
        return token_log_probs, entropy

    # -- checkpoints and interrupts ----------------------------------------------------------------------------

    def _save(self) -> None:
        save_checkpoint(self.out_dir / "checkpoint", self.model, self.optimizer, self.iteration, self.config)

    def _on_sigint(self, signum, frame) -> None:
        self._stop_requested = True
        if not self._protected:
            raise KeyboardInterrupt
        self.log("[train-local] Ctrl-C: finishing this iteration's update and checkpoint, then stopping")

    def close(self) -> None:
        """Stop generation and the environments (after the calls an interrupt left running have returned)."""
        self.server.close()
        self.env_pool.close()


def _stderr_progress(line: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {line}", file=sys.stderr, flush=True)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _load_tasks(config: LocalTrainConfig):
    if config.env != "alfworld":
        raise ValueError(f"train-local plays env 'alfworld' for now, got {config.env!r}")
    from verl_agent_ext.envs.alfworld.games import generated_tasks, list_tasks

    if config.games_dir:
        return list_tasks("train", games_dir=config.games_dir)
    return generated_tasks("train", per_type=config.games_per_type, seed=config.seed)


def _make_env_pool(config: LocalTrainConfig):
    from verl_agent_ext.envs.alfworld.prompt import PromptConfig
    from verl_agent_ext.envs.pool import EnvPool

    template = {"template": config.prompt_template} if config.prompt_template else {}
    prompt = PromptConfig(history_turns=config.history_length, max_actions=config.max_actions, **template)
    env_kwargs = {"max_steps": config.max_steps, "prompt": prompt}
    return EnvPool(config.env, num_envs=config.groups_per_iter * config.group_size, env_kwargs=env_kwargs)
