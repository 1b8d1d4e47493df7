"""The arena's fast paths give the same bits as the plain computations they replace.

`FeatureHasher.features` (memoised per step, per text field, per interaction pattern), `CandidatePolicy.
step_log_probs` (memoised per weight version) and `RowAdam` (Adam on the touched rows only) against plain
re-implementations of the definitions: hashed ids, log-probs, entropies and weights must be equal, not close.
"""

from __future__ import annotations

import zlib

import numpy as np
import torch

from verl_agent_ext.arena.policy import WORD, CandidatePolicy, Context, FeatureHasher, pack
from verl_agent_ext.arena.row_adam import RowAdam


def _plain_features(context: Context, buckets: int) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """The policy's features straight from its definition (module docstring of arena/policy.py), no memo."""

    def ids(features):
        return np.asarray([zlib.crc32(f.encode()) % buckets for f in features], dtype=np.int64)

    def words(text):
        return WORD.findall(text.lower())

    task, observation = words(context.task), words(context.observation)
    last = words(context.past_actions[-1]) if context.past_actions else []
    ctx = [f"t:{w}" for w in task] + [f"o:{w}" for w in observation] + [f"h:{w}" for w in last]
    ctx += [f"o2:{a}_{b}" for a, b in zip(observation, observation[1:], strict=False)]
    act, lin = [], []
    for action in context.candidates:
        action_words = words(action)
        verb = action_words[0] if action_words else ""
        bigrams = [f"a2:{a}_{b}" for a, b in zip(action_words, action_words[1:], strict=False)]
        act.append(ids([f"a:{w}" for w in action_words] + bigrams + [f"v:{verb}"]))
        objects = [w for w in action_words[1:] if not w.isdigit() and w not in ("to", "from", "in", "on", "with")]
        tags = [f"x:{verb}"] + [f"xt:{verb}:{w in task}" for w in objects]
        tags += [f"xo:{verb}:{w in observation}" for w in objects] + [f"xh:{verb}:{w in last}" for w in objects]
        lin.append(ids([*tags, f"past:{verb}:{action in context.past_actions}"]))
    return ids(ctx), act, lin


def _plain_log_probs(policy: CandidatePolicy, ctx_ids, act_ids, lin_ids) -> tuple[np.ndarray, float]:
    """The numpy rollout forward as first written: means and sums recomputed for every step."""
    ctx_w, act_w, lin_w = (m.weight.detach().numpy() for m in (policy.ctx, policy.act, policy.lin))
    ctx = ctx_w[ctx_ids].mean(0) if len(ctx_ids) else np.zeros(ctx_w.shape[1], dtype=ctx_w.dtype)
    act = np.stack([act_w[ids].mean(0) if len(ids) else np.zeros_like(ctx) for ids in act_ids])
    lin = np.asarray([lin_w[ids, 0].sum() for ids in lin_ids])
    logits = (act @ ctx + lin).astype(np.float64)
    shifted = logits - logits.max()
    log_p = shifted - np.log(np.exp(shifted).sum())
    return log_p, float(-(np.exp(log_p) * log_p).sum())


def _episode_contexts() -> list[Context]:
    """States of a few episodes, with revisits (same state, other history), empty texts and repeated actions."""
    task = "put a clean apple in fridge"
    rooms = ["You arrive at countertop 1. On the countertop 1, you see an apple 1, a mug 2.", "Nothing happens.", ""]
    actions = ("go to fridge 1", "take apple 1 from countertop 1", "clean apple 1 with sinkbasin 1", "look", "2 3")
    contexts = []
    for past in ((), ("look",), ("go to fridge 1", "look"), ("look", "go to fridge 1"), ("", "look")):
        for room in rooms:
            contexts.append(Context(task, room, actions, past))
            contexts.append(Context("", room, actions[:2], past))  # an empty task
    return contexts + contexts[:7]  # revisits hit the memo


def test_memoised_features_and_log_probs_equal_the_plain_definitions():
    policy = CandidatePolicy(buckets=4096, dim=8, seed=1)
    with torch.no_grad():
        policy.lin.weight.normal_()
    hasher = FeatureHasher(4096, max_steps_memo=8)  # small: the memo also evicts
    optimizer = RowAdam(policy.parameters(), lr=0.1)
    contexts = _episode_contexts()
    for update in range(3):
        steps = []
        for context in contexts:
            step = hasher.features(context)
            ctx, act, lin = _plain_features(context, 4096)
            assert np.array_equal(step.ctx, ctx) and step.ctx.dtype == np.int64
            assert all(np.array_equal(a, b) for a, b in zip(step.act, act, strict=True))
            assert all(np.array_equal(a, b) for a, b in zip(step.lin, lin, strict=True))
            log_p, entropy = policy.step_log_probs(step)
            plain_log_p, plain_entropy = _plain_log_probs(policy, ctx, act, lin)
            assert np.array_equal(log_p, plain_log_p) and entropy == plain_entropy
            steps.append(step)
        assert len(hasher._steps) <= 8
        # an update changes the weights in place: the numpy forward must not answer from before it
        packed = pack(steps)
        loss = -policy.log_probs(packed)[0][packed.first].sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        assert not np.array_equal(policy.step_log_probs(steps[0])[0], log_p) or update == 0


def test_row_adam_equals_torch_adam_bit_for_bit():
    generator = torch.Generator().manual_seed(0)
    for shape in ((512, 16), (512, 1)):
        start = torch.randn(shape, generator=generator)
        ours, theirs = torch.nn.Parameter(start.clone()), torch.nn.Parameter(start.clone())
        row_adam, adam = RowAdam([ours], lr=0.05), torch.optim.Adam([theirs], lr=0.05)
        for step in range(12):
            grad = torch.zeros(shape)
            rows = torch.randint(0, shape[0], (7 if step < 6 else 0,), generator=generator)  # then: moments decay
            scale = 10.0 ** torch.randint(-6, 2, (len(rows), 1), generator=generator)
            grad[rows] = torch.randn(len(rows), shape[1], generator=generator) * scale
            ours.grad, theirs.grad = grad.clone(), grad.clone()
            row_adam.step()
            adam.step()
            assert torch.equal(ours.detach().view(torch.int32), theirs.detach().view(torch.int32))
        state, torch_state = row_adam.state[ours], adam.state[theirs]
        assert torch.equal(state["exp_avg"], torch_state["exp_avg"])
        assert torch.equal(state["exp_avg_sq"], torch_state["exp_avg_sq"])
        assert int(state["active"].sum()) < shape[0]  # it really skipped rows
