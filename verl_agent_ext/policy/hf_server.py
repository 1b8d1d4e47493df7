"""A Hugging Face generation backend behind verl's server-manager interface.

verl's agent loops call ``await server_manager.generate(request_id, prompt_ids=..., sampling_params=...)`` and get
a ``TokenOutput`` (response token ids + per-token log-probs). On a GPU cluster that is vLLM/SGLang; here it is
``HFServerManager``: concurrent requests from many episodes are collected and run as one left-padded
``model.generate`` in a worker thread, so the event loop (and the environments) keep running. A batch starts when
``target_batch_size`` requests wait (the trainer sets it to the number of live episodes) or ``batch_wait_s`` after
its first request, whichever comes first.

Log-probs are those of the sampled tokens under ``softmax(logits / temperature)``, the same quantity verl's actor
computes for ``old_log_prob`` (it divides logits by the rollout temperature).

Reproducible sampling: a request whose ``sampling_params`` carry an integer ``seed`` (vLLM's per-request key;
train-local gives every episode its own) draws its tokens from its own random stream, seeded by that seed, the
branch part of its request id and how many requests with that key came before. Tokens are sampled by the
Gumbel-max trick on the temperature / top-k / top-p filtered logits, so a request's tokens depend neither on
which other requests share its batch nor on their order; batches are also sorted by that key. Without a seed the
global torch generator samples, as ``model.generate`` does.

The same class serves both trainers: `train-local` calls it in-process, and verl's trainer reaches it through the
``transformers`` rollout backend (`verl_agent_ext.verl_plugin.hf_rollout`), which wraps it in a Ray actor and
pushes the actor's weights into it with `load_weights` after every update (`global_steps` tags the outputs).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import torch
from verl.workers.rollout.replica import TokenOutput

logger = logging.getLogger(__name__)


@dataclass
class _Request:
    prompt_ids: list[int]
    max_tokens: int
    temperature: float
    top_p: float
    top_k: int
    future: asyncio.Future = field(repr=False)
    stream: tuple | None = None  # (seed, branch, n): the request's own random stream, None: the global one


class _UniformLogits:
    """Logits processor that makes every token equally likely: the "garbage model" used to test bad input."""

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(scores)


class _SeededSampling:
    """Samples each row with its own torch.Generator: Gumbel noise added to the filtered, tempered logits, so the
    greedy step that follows picks a token with probability softmax(filtered logits / temperature)."""

    def __init__(self, generators: list[torch.Generator], temperature: float, top_p: float, top_k: int):
        self.generators = generators
        self.temperature = temperature
        self.top_p = top_p
        self.top_k = top_k

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        logits = scores.float() / self.temperature
        if 0 < self.top_k < logits.shape[-1]:
            kth = torch.topk(logits, self.top_k, dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, -float("inf"))
        if self.top_p < 1.0:
            ordered, order = torch.sort(logits, dim=-1, descending=True)
            outside = torch.softmax(ordered, dim=-1).cumsum(dim=-1) - torch.softmax(ordered, dim=-1) > self.top_p
            logits = logits.masked_fill(torch.zeros_like(outside).scatter(-1, order, outside), -float("inf"))
        uniform = torch.stack([torch.rand(logits.shape[-1], generator=g) for g in self.generators])
        gumbel = -torch.log(-torch.log(uniform.clamp(min=1e-20, max=1.0 - 1e-7)))
        return logits + gumbel.to(logits.device)


def request_stream_seed(stream: tuple) -> int:
    """A 63-bit seed from a request's (seed, branch, n) key (stable across processes, unlike `hash`)."""
    import hashlib

    digest = hashlib.blake2b(repr(stream).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


class HFServerManager:
    """verl server-manager interface over one in-process HF causal LM, batching concurrent requests.

    model: a causal LM (possibly peft-wrapped); generation runs under ``torch.no_grad`` in eval mode.
    tokenizer: its tokenizer (pad token id used for left padding).
    response_length: default ``max_tokens`` when a request's sampling_params has none (verl's rollout config).
    max_model_len: prompt + response budget in tokens; longer prompts keep their last tokens.
    max_batch_size: at most this many requests per ``generate`` call.
    batch_wait_s: the longest a batch's first request waits for concurrent ones (seconds).
    target_batch_size: start a batch as soon as this many requests wait (1: never wait); a caller that knows
        how many episodes are live sets it (see the module docstring).
    garbage_tokens: sample uniformly random tokens (bad-input testing); log-probs stay the model's.
    """

    def __init__(
        self,
        model,
        tokenizer,
        *,
        response_length: int = 64,
        max_model_len: int = 2048,
        max_batch_size: int = 16,
        batch_wait_s: float = 5.0,
        target_batch_size: int = 1,
        garbage_tokens: bool = False,
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.response_length = response_length
        self.max_model_len = max_model_len
        self.max_batch_size = max_batch_size
        self.batch_wait_s = batch_wait_s
        self.target_batch_size = target_batch_size
        self.garbage_tokens = garbage_tokens
        eos = model.generation_config.eos_token_id
        self.stop_token_ids = set(eos if isinstance(eos, list) else [eos]) - {None}
        self.pad_token_id = tokenizer.pad_token_id
        # One thread: the model is never run by two batches at once.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hf-generate")
        self._pending: list[_Request] = []
        self._flushing = False
        self._model_lock = threading.Lock()
        self.global_steps: int | None = None  # weight version, returned in every output's extra_fields
        self._stream_counts: dict[tuple, int] = {}  # requests seen per (seed, branch): the n of the next one
        self.stats = {"requests": 0, "batches": 0, "generated_tokens": 0, "generate_seconds": 0.0}

    async def generate(
        self, request_id: str, *, prompt_ids: list[int], sampling_params: dict[str, Any], **kwargs: Any
    ) -> TokenOutput:
        """Generate one response for `prompt_ids` (verl's contract; multimodal kwargs are ignored).

        sampling_params: verl's keys ``temperature`` (0 = greedy), ``top_p``, ``top_k`` (-1 = off),
        ``max_tokens`` / ``max_new_tokens``, ``logprobs``; log-probs are always returned.
        """
        loop = asyncio.get_running_loop()
        prompt_ids = [int(token) for token in prompt_ids]
        budget = max(1, self.max_model_len - 1)
        if len(prompt_ids) > budget:
            logger.warning("prompt of %d tokens truncated to its last %d", len(prompt_ids), budget)
            prompt_ids = prompt_ids[-budget:]
        max_tokens = sampling_params.get("max_tokens", sampling_params.get("max_new_tokens", self.response_length))
        max_tokens = max(1, min(int(max_tokens), self.max_model_len - len(prompt_ids)))
        stream = None
        if sampling_params.get("seed") is not None:
            # the branch part of a 3SPO branch id ("<traj>/<depth>.<k>"): forks of one episode get their own streams
            key = (int(sampling_params["seed"]), str(request_id).partition("/")[2])
            stream = (*key, self._stream_counts.get(key, 0))
            self._stream_counts[key] = stream[2] + 1
        request = _Request(
            prompt_ids=prompt_ids,
            max_tokens=max_tokens,
            temperature=float(sampling_params.get("temperature", 1.0)),
            top_p=float(sampling_params.get("top_p", 1.0)),
            top_k=int(sampling_params.get("top_k", -1)),
            future=loop.create_future(),
            stream=stream,
        )
        self._pending.append(request)
        if not self._flushing:
            self._flushing = True
            loop.create_task(self._flush())
        return await request.future

    async def _flush(self) -> None:
        """Run pending requests batch by batch until none is left (one flush task at a time)."""
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                # Let concurrent episodes (whose env steps are still running) queue their next request.
                deadline = loop.time() + self.batch_wait_s
                wanted = min(max(self.target_batch_size, 1), self.max_batch_size)
                await asyncio.sleep(0)
                while len(self._pending) < wanted and loop.time() < deadline:
                    await asyncio.sleep(0.01)
                    wanted = min(max(self.target_batch_size, 1), self.max_batch_size)
                batch = self._take_batch()
                try:
                    outputs = await loop.run_in_executor(self._executor, self._generate_batch, batch)
                except Exception as error:  # surface the failure in every waiting episode
                    for request in batch:
                        if not request.future.done():
                            request.future.set_exception(error)
                    continue
                for request, output in zip(batch, outputs, strict=True):
                    if not request.future.done():
                        request.future.set_result(output)
        finally:
            self._flushing = False

    def _take_batch(self) -> list[_Request]:
        """Up to max_batch_size pending requests sharing the first one's sampling settings."""
        first = self._pending[0]
        key = (first.temperature, first.top_p, first.top_k)
        batch = [r for r in self._pending if (r.temperature, r.top_p, r.top_k) == key][: self.max_batch_size]
        taken = {id(r) for r in batch}
        self._pending = [r for r in self._pending if id(r) not in taken]
        if all(r.stream is not None for r in batch):  # an order that does not depend on arrival times
            batch.sort(key=lambda r: r.stream)
        return batch

    @torch.no_grad()
    def _generate_batch(self, batch: list[_Request]) -> list[TokenOutput]:
        """One left-padded ``model.generate`` for `batch`; returns each response cut at its first stop token."""
        from transformers import LogitsProcessorList

        started = time.perf_counter()
        first = batch[0]
        device = next(self.model.parameters()).device
        width = max(len(r.prompt_ids) for r in batch)
        input_ids = torch.full((len(batch), width), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, request in enumerate(batch):
            input_ids[row, width - len(request.prompt_ids) :] = torch.tensor(request.prompt_ids)
            attention_mask[row, width - len(request.prompt_ids) :] = 1
        greedy = first.temperature <= 0
        seeded = not greedy and all(r.stream is not None for r in batch)
        options: dict[str, Any] = {"do_sample": not greedy and not seeded}
        processors = [_UniformLogits()] if self.garbage_tokens else []
        if seeded:  # each row from its own stream: a greedy pick over Gumbel-perturbed filtered logits
            generators = [torch.Generator().manual_seed(request_stream_seed(r.stream)) for r in batch]
            processors.append(_SeededSampling(generators, first.temperature, first.top_p, first.top_k))
        elif not greedy:
            options.update(temperature=first.temperature, top_p=first.top_p, top_k=max(first.top_k, 0))
        with self._model_lock:
            was_training = self.model.training
            self.model.eval()
            out = self.model.generate(
                input_ids=input_ids.to(device),
                attention_mask=attention_mask.to(device),
                max_new_tokens=max(r.max_tokens for r in batch),
                pad_token_id=self.pad_token_id,
                eos_token_id=sorted(self.stop_token_ids),
                logits_processor=LogitsProcessorList(processors) if processors else None,
                output_logits=True,
                return_dict_in_generate=True,
                **options,
            )
            self.model.train(was_training)
        new_tokens = out.sequences[:, width:].cpu()  # (batch, new_len)
        logits = torch.stack(out.logits, dim=1).float().cpu()  # (batch, new_len, vocab), raw model logits
        if not greedy:
            logits = logits / first.temperature
        log_probs = torch.log_softmax(logits, dim=-1).gather(-1, new_tokens.unsqueeze(-1)).squeeze(-1)
        outputs = []
        for row, request in enumerate(batch):
            tokens = new_tokens[row, : request.max_tokens].tolist()
            length = next((i + 1 for i, token in enumerate(tokens) if token in self.stop_token_ids), len(tokens))
            outputs.append(
                TokenOutput(
                    token_ids=tokens[:length],
                    log_probs=log_probs[row, :length].tolist(),
                    stop_reason="completed",
                    extra_fields={"global_steps": self.global_steps},
                )
            )
            self.stats["generated_tokens"] += length
        self.stats["generate_seconds"] += time.perf_counter() - started
        self.stats["requests"] += len(batch)
        self.stats["batches"] += 1
        return outputs

    def restart_streams(self) -> None:
        """Forget how many requests each seed has made: the next ones sample as a fresh server's would."""
        self._stream_counts.clear()

    def load_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> list[str]:
        """Copy `(name, tensor)` pairs into the model's parameters/buffers (names as in ``state_dict``).

        Waits for a running batch to finish; returns the names loaded. An unknown name raises (the sender and the
        model disagree on the architecture); a subset is fine (weights arrive in buckets).
        """
        state = dict(named_tensors)
        with self._model_lock:
            missing_or_unexpected = self.model.load_state_dict(state, strict=False)
        if missing_or_unexpected.unexpected_keys:
            raise KeyError(f"weights not in the rollout model: {missing_or_unexpected.unexpected_keys[:5]}")
        return list(state)

    def close(self) -> None:
        """Stop the generation thread."""
        self._executor.shutdown(wait=True)
