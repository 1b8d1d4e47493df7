"""Single-process training with any registered estimator: verl's steps 2-4 in one process, on a CPU or one GPU.

One iteration, read top to bottom in `LocalTrainer.train_iteration`:
  1. rollout: `groups_per_iter` tasks x `group_size` episodes through the project's verl agent loop
     (`EnvAgentLoop`, the same code verl's workers run) against `HFServerManager` (verl's server-manager interface
     on a HF model); every environment step becomes one training row.
  2. old log-probs (only when needed: ppo_epochs > 1, an estimator reading `step_entropy`, or istar): one no-grad
     pass over the rows under the rollout policy, as verl's old-log-prob pass (verl's `logprobs_from_logits` /
     `entropy_from_logits`); writes each row's `step_entropy`.
  3. credit: advantages from the registered verl estimator `estimator` (the step-level ones get the step
     metadata, anything else is called with verl's standard arguments, as verl's `compute_advantage` does); for
     istar the PRM adapter first scores the rows and takes its own update (`verl_agent_ext.local.prm`).
  4. update: `ppo_epochs` passes over the rows in micro-batches; the loss is verl's policy loss / KL / aggregation
     (`verl_agent_ext.actor_loss`), gradients accumulate to one optimizer step per mini-batch (all rows).
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

import numpy as np
import torch
from verl.utils.torch_functional import entropy_from_logits, logprobs_from_logits

from verl_agent_ext.actor_loss import actor_loss, set_global_batch_info
from verl_agent_ext.agent.metrics import episode_metrics as shared_episode_metrics
from verl_agent_ext.agent.state_score_store import STATE_FILE, load_state, run_score_store, save_state
from verl_agent_ext.credit.empg import STEP_ENTROPY_KEY
from verl_agent_ext.credit.istar import istar_config_from
from verl_agent_ext.estimators import extra_metadata_keys
from verl_agent_ext.local.advantages import ZERO_ADVANTAGE, compute_advantages
from verl_agent_ext.local.batch import StepRows, step_rows
from verl_agent_ext.local.checkpoint import check_resumable, find_checkpoint, load_checkpoint, save_checkpoint
from verl_agent_ext.local.config import LocalTrainConfig, actor_config, check_settings
from verl_agent_ext.local.metrics import MetricsLog, plot_learning_curve, table_header, table_row
from verl_agent_ext.local.prm import PRM_FILE, ImplicitPRM, load_prm, save_prm
from verl_agent_ext.policy.hf_server import HFServerManager, request_stream_seed
from verl_agent_ext.policy.model import add_lora, load_adapter, load_policy

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
        self.verl_config = check_settings(config)  # fail fast: unknown estimator, bad `--set` or estimator setting
        # The agent loop is built outside a verl worker without the HF model_type; verl then warns once per
        # episode that it uses its default token builder (the right one for this chat template).
        logging.getLogger("verl.utils.tokenizer.continuous_token_wiring").setLevel(logging.ERROR)
        self.out_dir = Path(config.out_dir)
        saved = find_checkpoint(self.out_dir / "checkpoint") if config.resume else None
        if saved is not None:
            check_resumable(saved, config)  # before loading anything: a different run is refused in a second
        self.out_dir.mkdir(parents=True, exist_ok=True)
        _seed_everything(config.seed)
        if config.num_threads > 0:
            torch.set_num_threads(config.num_threads)
        self.device = "cuda" if config.device == "auto" and torch.cuda.is_available() else config.device
        self.device = "cpu" if self.device == "auto" else self.device

        self.scores = run_score_store(config.estimator, self.verl_config.algorithm)  # 3SPO's state scores, else None
        self._scores_before: dict | None = None  # the table as of the last completed iteration, while one runs
        self.actor_config = actor_config(self.verl_config)

        self.model, self.tokenizer = load_policy(config.model, self.device)
        if config.init_adapter:
            self.model = load_adapter(self.model, config.init_adapter)
        elif config.lora_rank > 0:
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
        self.prm = self._make_prm() if config.estimator == "istar" else None
        self.tasks = load_tasks(config)
        self.env_pool = _make_env_pool(config)
        self.metrics = MetricsLog(self.out_dir / "metrics.jsonl")
        self.iteration = 0  # completed iterations
        self._protected = False  # True from the optimizer step to the end of the iteration
        self._stop_requested = False
        if saved is not None:
            self.iteration = load_checkpoint(saved, self.model, self.optimizer)
            if self.scores is not None and not load_state(self.scores, saved):
                raise ValueError(f"{saved} has no 3SPO state-score table ({STATE_FILE})")
            if self.prm is not None and not load_prm(self.prm, saved):
                raise ValueError(f"{saved} has no iStar PRM state ({PRM_FILE})")
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

        old_log_probs = None
        if self.needs_old_log_prob_pass:
            self.progress(f"[iter {iteration}] old log-probs and step entropy of {len(rows)} step rows ...")
            old_log_prob_started = time.perf_counter()
            old_log_probs, old_log_prob_metrics = self.old_log_prob_pass(rows)
            record.update(old_log_prob_metrics)
            record["time/old_log_prob"] = time.perf_counter() - old_log_prob_started

        if self.prm is not None:  # iStar: score the batch with the PRM, then update the PRM, then the policy
            prm_started = time.perf_counter()
            record.update(self.prm.score_and_update(rows, old_log_probs))
            record["time/prm"] = time.perf_counter() - prm_started
            self.progress(
                f"[iter {iteration}] PRM: pair loss {record['istar/loss']:.4f} over {record['istar/pairs']:.0f} "
                f"pairs, {'updated' if record['istar/updated'] else 'not updated'}"
            )

        self.progress(f"[iter {iteration}] credit ({self.config.estimator}) over {len(rows)} step rows ...")
        credit_started = time.perf_counter()
        self._scores_before = None if self.scores is None else self.scores.state_dict()  # 3SPO: updated by credit
        advantages, credit_metrics = self.compute_advantages(rows)
        record.update(credit_metrics)
        record["time/credit"] = time.perf_counter() - credit_started

        self.progress(f"[iter {iteration}] update ...")
        update_started = time.perf_counter()
        try:
            record.update(self.update(rows, advantages, old_log_probs))  # protects itself from its optimizer step on
            record["time/update"] = time.perf_counter() - update_started
            record["time/iteration"] = time.perf_counter() - started
            self.iteration = iteration
            self._scores_before = None
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
        config = self.config
        rng = random.Random(config.seed * 1_000_003 + iteration)
        tasks = (
            rng.sample(self.tasks, k=config.groups_per_iter)
            if len(self.tasks) >= config.groups_per_iter
            else [rng.choice(self.tasks) for _ in range(config.groups_per_iter)]
        )
        generation_before = self.server.stats["generate_seconds"]
        tokens_before = self.server.stats["generated_tokens"]
        started = time.perf_counter()
        episodes = self.play(tasks, config.group_size, config.temperature, f"iter {iteration}")
        wall = time.perf_counter() - started
        generation = self.server.stats["generate_seconds"] - generation_before

        outputs = [output for _, episode in episodes for output in episode]
        uids = [uid for uid, episode in episodes for _ in episode]
        rows = step_rows(outputs, uids)
        metrics = {
            **episode_metrics(episodes, "rollout"),
            "rollout/steps": float(len(rows)),
            "rollout/response_tokens_mean": float(rows.response_mask.sum(-1).float().mean()),
            "rollout/generated_tokens": float(self.server.stats["generated_tokens"] - tokens_before),
            "time/generation": generation,
            "time/environment": wall - generation,
            "time/rollout": wall,
        }
        if self.scores is not None:  # 3SPO's branching rollout
            metrics.update({f"rollout/branch_{name}": float(value) for name, value in self.tree_totals.items()})
            metrics["rollout/rows_per_group"] = float(len(rows)) / len(tasks)
        return rows, metrics

    def evaluate(self, tasks: list, temperature: float = 0.0) -> dict[str, float]:
        """Success and invalid-action rates of one episode per task with the current policy (no update).

        temperature: 0 is greedy decoding. Keys as the rollout's, prefixed "eval/".
        """
        return episode_metrics(self.play(tasks, 1, temperature, "eval"), "eval")

    def play(self, tasks: list, group_size: int, temperature: float, label: str) -> list[tuple[str, list]]:
        """Play every task `group_size` times through the agent loop, concurrently as far as the env pool allows.

        Returns one (group uid, list of the episode's `AgentLoopOutput`s) per episode, tasks in order.
        """
        from verl_agent_ext.agent.env_agent_loop import build_agent_loop

        sampling_params = {"temperature": temperature, "top_p": self.config.top_p, "top_k": -1, "logprobs": True}
        total = len(tasks) * group_size
        capacity = self.config.groups_per_iter * self.config.group_size  # environments in the pool
        finished: list[bool] = []

        async def play_one(task, uid: str, seed: int):
            loop = build_agent_loop(self.verl_config, self.server, self.tokenizer, env_pools=[self.env_pool])
            row = {"env_name": task.env, "task_id": task.task_id, "task_type": task.task_type, "split": task.split}
            row["data_fingerprint"] = task.data_fingerprint  # WebShop: the env refuses another catalog's goal
            try:
                outputs = await loop.run({**sampling_params, "seed": seed}, **row)
            finally:
                # episodes still to send requests: the live ones, at most one per environment
                self.server.target_batch_size = min(total - len(finished) - 1, capacity)
            finished.append(any(output.extra_fields["episode_success"] for output in outputs))
            tree = getattr(loop, "last_tree_stats", None)  # 3SPO's branching rollout: several trajectories
            if tree is not None:
                for name in self.tree_totals:
                    self.tree_totals[name] += getattr(tree, name)
            self.progress(
                f"[{label}]   episode {len(finished)}/{total}: "
                f"{len(outputs)} steps, {'won' if finished[-1] else 'not won'}"
            )
            return uid, outputs

        async def play_all():
            # Ids and random streams follow from (seed, label, position), not from timing: each episode samples
            # from its own stream (hf_server's seeded sampling), whichever episodes share a generation batch.
            seed = self.config.seed
            groups = [(task, f"{request_stream_seed((seed, label, i)):016x}") for i, task in enumerate(tasks)]
            return await asyncio.gather(
                *(
                    play_one(task, uid, request_stream_seed((seed, label, i, k)))
                    for i, (task, uid) in enumerate(groups)
                    for k in range(group_size)
                )
            )

        self.tree_totals = {"forks": 0, "stops": 0, "replays": 0, "dropped": 0}
        self.server.target_batch_size = min(total, capacity)
        return asyncio.run(play_all())

    # -- 2. old log-probs --------------------------------------------------------------------------------------

    @property
    def needs_old_log_prob_pass(self) -> bool:
        """ppo_epochs > 1 (the data's policy differs from the updated one), the estimator reads step_entropy, or
        iStar's PRM needs log pi_old."""
        reads_entropy = STEP_ENTROPY_KEY in extra_metadata_keys(self.config.estimator)
        return self.config.ppo_epochs > 1 or reads_entropy or self.prm is not None

    def old_log_prob_pass(self, rows: StepRows) -> tuple[torch.Tensor, dict[str, float]]:
        """(rows, R) log-probs of the responses under the current (= rollout) policy, and metrics.

        Also writes `rows.non_tensor_batch["step_entropy"]` (rows,): the mean token entropy of each step's response
        tokens, at the rollout temperature (verl's `entropy` of the old-log-prob pass, averaged per row).
        """
        log_probs, entropy = self._forward_no_grad(rows, range(len(rows)), with_entropy=True)
        entropy = entropy.cpu()
        mask = rows.response_mask.to(entropy.dtype)
        step_entropy = (entropy * mask).sum(-1) / mask.sum(-1).clamp(min=1)
        rows.non_tensor_batch[STEP_ENTROPY_KEY] = step_entropy.double().numpy()
        return log_probs, {"actor/entropy": float((entropy * mask).sum() / mask.sum().clamp(min=1))}

    # -- 3. credit ---------------------------------------------------------------------------------------------

    def compute_advantages(self, rows: StepRows) -> tuple[torch.Tensor, dict[str, float]]:
        """(rows, R) advantages from the configured estimator, and its diagnostics."""
        return compute_advantages(self.config.estimator, rows, self.verl_config.algorithm)

    # -- 4. update ---------------------------------------------------------------------------------------------

    def update(
        self, rows: StepRows, advantages: torch.Tensor, old_log_probs: torch.Tensor | None = None
    ) -> dict[str, float]:
        """`ppo_epochs` passes of micro-batches; one optimizer step per pass (all rows form one mini-batch).

        With one pass, the data's policy is the current one, so old_log_prob = log_prob.detach() (verl's on-policy
        shortcut); otherwise the old log-probs (rows, R) of `old_log_prob_pass` (computed here when None). Rows whose
        advantage is zero on every token (|A| <= ZERO_ADVANTAGE) are skipped when neither KL nor entropy terms are
        on: their loss and gradient are zero, and verl's aggregation divides by the token count of the whole
        mini-batch (`global_batch_info`).
        """
        config, actor = self.config, self.actor_config
        set_global_batch_info(actor, int(rows.response_mask.sum()), len(rows))
        needs_all_rows = actor.use_kl_loss or actor.entropy_coeff != 0
        # max |A| below ZERO_ADVANTAGE is float noise of an all-equal group (e.g. every step invalid)
        active = [i for i in range(len(rows)) if needs_all_rows or advantages[i].abs().max() > ZERO_ADVANTAGE]
        on_policy = config.ppo_epochs == 1
        if not on_policy and old_log_probs is None:
            old_log_probs, _ = self.old_log_prob_pass(rows)
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

    def _log_probs(self, rows: StepRows, index) -> torch.Tensor:
        """(len(index), R) log-probs of the response tokens under the current model, in micro-batches, no grad."""
        return self._forward_no_grad(rows, index)[0]

    @torch.no_grad()
    def _forward_no_grad(
        self, rows: StepRows, index, with_entropy: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`_forward` over rows `index` in micro-batches, no grad: log-probs and (when asked) entropies (len, R)."""
        index = list(index)
        chunks = [
            index[i : i + self.config.micro_batch_size] for i in range(0, len(index), self.config.micro_batch_size)
        ]
        outputs = [self._forward(rows, chunk, with_entropy) for chunk in chunks]
        entropy = torch.cat([output[1] for output in outputs]) if with_entropy else None
        return torch.cat([output[0] for output in outputs]), entropy

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
        tokens = rows.responses[index].to(self.device)
        mask = rows.response_mask[index].to(self.device)
        return response_log_probs(picked, tokens, mask, with_entropy)

    # -- checkpoints and interrupts ----------------------------------------------------------------------------

    def _make_prm(self) -> ImplicitPRM:
        """iStar's PRM adapter on this model, with the AdamW settings of `algorithm.istar` (lr: the policy's)."""
        istar = istar_config_from(self.verl_config.algorithm)
        betas = tuple(self.verl_config.actor_rollout_ref.actor.optim.betas)
        lr = self.config.lr if istar.prm_lr is None else istar.prm_lr
        return ImplicitPRM(
            self.model,
            istar,
            self._forward,
            self._log_probs,
            self.config.micro_batch_size,
            lr,
            betas,
            before_step=lambda: setattr(self, "_protected", True),  # the weights change now (see _on_sigint)
        )

    def _save(self) -> None:
        save_checkpoint(
            self.out_dir / "checkpoint", self.model, self.optimizer, self.iteration, self.config, self._save_extra
        )

    def _save_extra(self, folder: Path) -> None:
        """3SPO: the state-score table as of `self.iteration` (an abandoned iteration's update is left out);
        iStar: the PRM adapter and its optimizer (its step defers a Ctrl-C to the end of the iteration, as the
        policy's does, so both stay at `self.iteration`)."""
        if self.scores is not None:
            save_state(self.scores.state_dict() if self._scores_before is None else self._scores_before, folder)
        if self.prm is not None:
            save_prm(self.prm, folder)

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


def episode_metrics(episodes: list[tuple[str, list]], prefix: str) -> dict[str, float]:
    """Success, invalid-action rate, length and per-task-type success of played episodes (`LocalTrainer.play`).

    `agent.metrics.episode_metrics` over the episodes' rows (counted per trajectory: a 3SPO branching session
    returns several), named `<prefix>/...` as train-local's metrics.jsonl columns.
    """
    fields = [output.extra_fields for _, episode in episodes for output in episode]
    columns = {key: np.array([row[key] for row in fields], dtype=object) for key in EPISODE_METRIC_KEYS}
    metrics = {}
    for key, value in shared_episode_metrics(columns).items():
        name = key.removeprefix("env/")
        metrics[f"{prefix}/{LOCAL_METRIC_NAMES.get(name, name)}"] = value
    return metrics


EPISODE_METRIC_KEYS = ("traj_uid", "episode_success", "task_type", "episode_length", "is_action_valid")
LOCAL_METRIC_NAMES = {"num_episodes": "episodes", "episode_length/mean": "episode_length"}


def load_tasks(config: LocalTrainConfig, split: str = "train") -> list:
    """ALFWorld tasks of `split`: games under `games_dir`, else the cached generated set; only `task_types`; for the
    training split, only those the searching expert wins within `solvable_within` steps (when set)."""
    if config.env != "alfworld":
        raise ValueError(f"train-local plays env 'alfworld' for now, got {config.env!r}")
    from verl_agent_ext.envs.alfworld.games import generated_tasks, list_tasks

    if config.games_dir:
        tasks = list_tasks(split, games_dir=config.games_dir)
    else:
        tasks = generated_tasks(split, per_type=config.games_per_type, seed=config.games_seed)
    wanted = [t for t in config.task_types.split(",") if t]
    tasks = [task for task in tasks if task.task_type in wanted] if wanted else tasks
    if split == "train" and config.solvable_within:
        tasks = _solvable_tasks(tasks, config.solvable_within)
    return tasks


def _solvable_tasks(tasks: list, max_steps: int) -> list:
    """The tasks the searching expert wins within `max_steps` (it plays each game once; the result is cached)."""
    from verl_agent_ext.envs.alfworld.solvable import solvable_within

    kept = solvable_within(tasks, max_steps)
    if not kept:
        raise ValueError(f"the searching expert wins no training task within {max_steps} steps (--solvable-within)")
    print(f"[train-local] training on the {len(kept)} of {len(tasks)} tasks the searcher wins within {max_steps} steps")
    return kept


def _make_env_pool(config: LocalTrainConfig):
    from verl_agent_ext.envs.alfworld.prompt import PromptConfig
    from verl_agent_ext.envs.pool import EnvPool

    template = {"template": config.prompt_template} if config.prompt_template else {}
    prompt = PromptConfig(history_turns=config.history_length, max_actions=config.max_actions, **template)
    env_kwargs = {"max_steps": config.max_steps, "prompt": prompt}
    return EnvPool(config.env, num_envs=config.groups_per_iter * config.group_size, env_kwargs=env_kwargs)


def response_log_probs(
    logits: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor, with_entropy: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs (b, R) of `tokens` (b, R) under softmax(logits) (b, R, vocab), and the entropy (b, R) when asked.

    verl's actor functions (`logprobs_from_logits`, `entropy_from_logits`) on float32 logits; 0 where `mask` is 0.
    """
    logits = logits.float()
    token_log_probs = logprobs_from_logits(logits, tokens) * mask
    entropy = entropy_from_logits(logits) * mask if with_entropy else None
    return token_log_probs, entropy
