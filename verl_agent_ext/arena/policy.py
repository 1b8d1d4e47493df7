"""The arena's light policy: a softmax over the environment's candidate actions, scored from hashed text features.

At a state with context x (task, observation, the previous action, the actions taken so far) and candidates
a_1..a_K (ALFWorld: the admissible commands):

    s(x, a) = <E_ctx(x), E_act(a)> + sum_{f in lin(x, a)} w_f          pi(a_k | x) = softmax_k s(x, a_k)

E_ctx, E_act: mean of hashed-feature embeddings (dimension `dim`): field-tagged words of the context, words,
bigrams and the verb of the action. lin(x, a): sparse interaction features of the action's verb with how its
words relate to the context (they occur in the task, in the observation, in the last action; the same action was
taken before in the episode), which a low-rank bilinear term learns slowly. Features hash (crc32) into
`buckets` rows. Every step yields an exact log-prob of the chosen action and the entropy of pi over the
candidates (EMPG's step entropy).

A batch of steps is packed once (`pack`): flat feature ids with EmbeddingBag offsets, one segment of candidates
per step; log-softmax and entropy are segment reductions (no per-step Python loop).
"""

from __future__ import annotations

import re
import zlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

WORD = re.compile(r"[a-z]+|\d+")


@dataclass(frozen=True)
class Context:
    """What the policy sees at one step (all text): the task, the observation, the episode's past actions."""

    task: str
    observation: str
    candidates: tuple[str, ...]
    past_actions: tuple[str, ...] = ()


@dataclass
class StepFeatures:
    """Hashed feature ids of one step: ctx (c,), per candidate its action ids and its interaction ids."""

    ctx: np.ndarray
    act: list[np.ndarray]
    lin: list[np.ndarray]


@dataclass
class PackedSteps:
    """S steps with C candidates in all, as flat EmbeddingBag inputs.

    ctx / ctx_offsets: (sum c,) / (S,); act, act_offsets / lin, lin_offsets: per candidate (C bags);
    segment: (C,) the step of each candidate; first: (S,) index of each step's first candidate.
    """

    ctx: torch.Tensor
    ctx_offsets: torch.Tensor
    act: torch.Tensor
    act_offsets: torch.Tensor
    lin: torch.Tensor
    lin_offsets: torch.Tensor
    segment: torch.Tensor
    first: torch.Tensor

    @property
    def num_steps(self) -> int:
        return len(self.first)


class FeatureHasher:
    """Field-tagged words / bigrams -> bucket ids (crc32, stable across processes), memoised.

    `features` is memoised per step (task, observation, last action, candidates, which candidates were already
    taken): a learning policy revisits states often (a group's sessions share their first steps). The memo holds
    at most `max_steps_memo` steps (oldest dropped first); equal steps share one `StepFeatures`, and equal
    interaction features one array, which `CandidatePolicy.step_log_probs` uses to reuse its sums.
    """

    def __init__(self, buckets: int, max_steps_memo: int = 1 << 15) -> None:
        self.buckets = buckets
        self.max_steps_memo = max_steps_memo
        self._ids: dict[str, int] = {}
        self._words: dict[str, tuple[str, ...]] = {}
        self._action: dict[str, np.ndarray] = {}
        self._verb_objects: dict[str, tuple[str, tuple[str, ...]]] = {}
        self._text_ids: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self._lin: dict[tuple, np.ndarray] = {}
        self._steps: OrderedDict[tuple, StepFeatures] = OrderedDict()

    def id(self, feature: str) -> int:
        value = self._ids.get(feature)
        if value is None:
            value = self._ids[feature] = zlib.crc32(feature.encode()) % self.buckets
        return value

    def words(self, text: str) -> tuple[str, ...]:
        words = self._words.get(text)
        if words is None:
            words = self._words[text] = tuple(WORD.findall(text.lower()))
        return words

    def action_ids(self, action: str) -> np.ndarray:
        ids = self._action.get(action)
        if ids is None:
            words = self.words(action)
            features = [f"a:{w}" for w in words] + [f"a2:{a}_{b}" for a, b in zip(words, words[1:], strict=False)]
            features.append(f"v:{words[0] if words else ''}")
            ids = self._action[action] = np.asarray([self.id(f) for f in features], dtype=np.int64)
        return ids

    def features(self, context: Context) -> StepFeatures:
        past = context.past_actions
        taken = set(past)
        key = (
            context.task,
            context.observation,
            past[-1] if past else None,
            context.candidates,
            tuple(action in taken for action in context.candidates),
        )
        step = self._steps.get(key)
        if step is None:
            if len(self._steps) >= self.max_steps_memo:
                self._steps.popitem(last=False)
            step = self._steps[key] = self._compute(context, taken)
        return step

    def _compute(self, context: Context, past: set[str]) -> StepFeatures:
        task, observation = self.words(context.task), self.words(context.observation)
        last = self.words(context.past_actions[-1]) if context.past_actions else ()
        ctx = np.concatenate(
            [
                self._field_ids("t", context.task),
                self._field_ids("o", context.observation),
                self._field_ids("h", context.past_actions[-1] if context.past_actions else ""),
                self._field_ids("o2", context.observation),
            ]
        )
        task_set, obs_set, last_set = set(task), set(observation), set(last)
        lin = []
        for action in context.candidates:
            verb, objects = self._verb_and_objects(action)
            key = (
                verb,
                tuple(w in task_set for w in objects),
                tuple(w in obs_set for w in objects),
                tuple(w in last_set for w in objects),
                action in past,
            )
            ids = self._lin.get(key)
            if ids is None:
                ids = self._lin[key] = self._lin_ids(*key)
            lin.append(ids)
        return StepFeatures(ctx=ctx, act=[self.action_ids(action) for action in context.candidates], lin=lin)

    def _field_ids(self, field: str, text: str) -> np.ndarray:
        """Ids of one context field of `text`: t / o / h: its words, o2: its bigrams."""
        ids = self._text_ids.get((field, text))
        if ids is None:
            words = self.words(text)
            if field == "o2":
                features = [f"o2:{a}_{b}" for a, b in zip(words, words[1:], strict=False)]
            else:
                features = [f"{field}:{w}" for w in words]
            ids = np.asarray([self.id(f) for f in features], dtype=np.int64)
            if len(self._text_ids) >= self.max_steps_memo:
                self._text_ids.popitem(last=False)
            self._text_ids[(field, text)] = ids
        return ids

    def _verb_and_objects(self, action: str) -> tuple[str, tuple[str, ...]]:
        found = self._verb_objects.get(action)
        if found is None:
            words = self.words(action)
            objects = tuple(w for w in words[1:] if not w.isdigit() and w not in ("to", "from", "in", "on", "with"))
            found = self._verb_objects[action] = (words[0] if words else "", objects)
        return found

    def _lin_ids(
        self, verb: str, in_task: tuple[bool, ...], in_obs: tuple[bool, ...], in_last: tuple[bool, ...], taken: bool
    ) -> np.ndarray:
        """Interaction ids of a candidate: its verb, with each object's presence in the task / observation / last
        action, and whether the action was taken before."""
        tags = [f"x:{verb}"]
        tags += [f"xt:{verb}:{flag}" for flag in in_task]
        tags += [f"xo:{verb}:{flag}" for flag in in_obs]
        tags += [f"xh:{verb}:{flag}" for flag in in_last]
        tags.append(f"past:{verb}:{taken}")
        return np.asarray([self.id(tag) for tag in tags], dtype=np.int64)


def _bags(groups: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = np.fromiter((len(g) for g in groups), dtype=np.int64, count=len(groups))
    offsets = np.concatenate(([0], np.cumsum(lengths)[:-1])) if len(groups) else np.zeros(0, dtype=np.int64)
    flat = np.concatenate(groups) if len(groups) else np.zeros(0, dtype=np.int64)
    return torch.from_numpy(flat.astype(np.int64)), torch.from_numpy(offsets.astype(np.int64))


def pack(steps: Sequence[StepFeatures]) -> PackedSteps:
    """Pack steps (each with >= 1 candidate) for one forward pass."""
    counts = np.fromiter((len(s.act) for s in steps), dtype=np.int64, count=len(steps))
    if (counts < 1).any():
        raise ValueError("every step needs at least one candidate action")
    ctx, ctx_offsets = _bags([s.ctx for s in steps])
    act, act_offsets = _bags([ids for s in steps for ids in s.act])
    lin, lin_offsets = _bags([ids for s in steps for ids in s.lin])
    return PackedSteps(
        ctx=ctx,
        ctx_offsets=ctx_offsets,
        act=act,
        act_offsets=act_offsets,
        lin=lin,
        lin_offsets=lin_offsets,
        segment=torch.from_numpy(np.repeat(np.arange(len(steps)), counts)),
        first=torch.from_numpy(np.concatenate(([0], np.cumsum(counts)[:-1]))),
    )


class CandidatePolicy(nn.Module):
    """pi(a | x) over candidate actions (module docstring). buckets: hashed feature rows; dim: embedding size."""

    def __init__(self, buckets: int = 1 << 18, dim: int = 16, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.ctx = nn.EmbeddingBag(buckets, dim, mode="mean")
        self.act = nn.EmbeddingBag(buckets, dim, mode="mean")
        self.lin = nn.EmbeddingBag(buckets, 1, mode="sum")
        with torch.no_grad():
            self.ctx.weight.copy_(torch.randn(buckets, dim, generator=generator) * 0.1)
            self.act.weight.copy_(torch.randn(buckets, dim, generator=generator) * 0.1)
            self.lin.weight.zero_()

    def logits(self, packed: PackedSteps) -> torch.Tensor:
        """Score of every candidate: (C,)."""
        ctx = self.ctx(packed.ctx, packed.ctx_offsets)[packed.segment]
        act = self.act(packed.act, packed.act_offsets)
        return (ctx * act).sum(-1) + self.lin(packed.lin, packed.lin_offsets).squeeze(-1)

    def log_probs(self, packed: PackedSteps) -> tuple[torch.Tensor, torch.Tensor]:
        """(log pi of every candidate (C,), entropy of every step (S,), in nats)."""
        return segment_log_softmax(self.logits(packed), packed.segment, packed.num_steps)

    def step_log_probs(self, step: StepFeatures) -> tuple[np.ndarray, float]:
        """`log_probs` of one step in numpy on the live weights (no autograd: ~20x faster for rollouts).

        Returns (log pi of its candidates (K,) float64, entropy in nats). Memoised until the weights change
        (`_NumpyForward`): per step, per candidate's action ids and per interaction-id array, so a state or an
        action seen again since the last update costs a dict look-up. Do not modify the returned array.
        """
        return self._numpy_forward().step(step)

    def _numpy_forward(self) -> _NumpyForward:
        forward = self.__dict__.get("_forward")
        weights = (self.ctx.weight, self.act.weight, self.lin.weight)
        if forward is None or not forward.current(weights):
            forward = self.__dict__["_forward"] = _NumpyForward(weights)
        return forward

    def __getstate__(self) -> dict:
        state = super().__getstate__()  # copies and deep copies start without the memo
        state.pop("_forward", None)
        return state


class _NumpyForward:
    """`CandidatePolicy.step_log_probs` at one version of the weights, with its sums memoised.

    Entries are keyed by the identity of the feature arrays and hold them, so an id is never reused while its
    entry lives; the policy replaces the whole object when a weight changes (in place: its version counter moves;
    or replaced: another tensor).
    """

    def __init__(self, weights: tuple[torch.Tensor, ...]) -> None:
        self.weights, self.versions = weights, [w._version for w in weights]
        self.ctx_w, self.act_w, self.lin_w = (w.detach().numpy() for w in weights)
        self._steps: dict[int, tuple[StepFeatures, np.ndarray, float]] = {}
        self._act: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._lin: dict[int, tuple[np.ndarray, np.floating]] = {}

    def current(self, weights: tuple[torch.Tensor, ...]) -> bool:
        """Whether these are the weights it was built on, unchanged since."""
        mine = self.weights
        return all(mine[k] is weights[k] and self.versions[k] == weights[k]._version for k in range(3))

    def step(self, step: StepFeatures) -> tuple[np.ndarray, float]:
        found = self._steps.get(id(step))
        if found is not None and found[0] is step:
            return found[1], found[2]
        ctx_w = self.ctx_w
        ctx = ctx_w[step.ctx].mean(0) if len(step.ctx) else np.zeros(ctx_w.shape[1], dtype=ctx_w.dtype)
        act = np.stack([self._act_mean(ids, ctx) for ids in step.act])
        lin = np.asarray([self._lin_sum(ids) for ids in step.lin])
        logits = (act @ ctx + lin).astype(np.float64)
        shifted = logits - logits.max()
        log_p = shifted - np.log(np.exp(shifted).sum())
        entropy = float(-(np.exp(log_p) * log_p).sum())
        self._steps[id(step)] = (step, log_p, entropy)
        return log_p, entropy

    def _act_mean(self, ids: np.ndarray, ctx: np.ndarray) -> np.ndarray:
        if not len(ids):
            return np.zeros_like(ctx)
        found = self._act.get(id(ids))
        if found is None or found[0] is not ids:
            found = self._act[id(ids)] = (ids, self.act_w[ids].mean(0))
        return found[1]

    def _lin_sum(self, ids: np.ndarray) -> np.floating:
        found = self._lin.get(id(ids))
        if found is None or found[0] is not ids:
            found = self._lin[id(ids)] = (ids, self.lin_w[ids, 0].sum())
        return found[1]


def segment_log_softmax(
    logits: torch.Tensor, segment: torch.Tensor, num_segments: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-softmax of `logits` (C,) inside each segment (`segment` (C,) sorted ids < S), and each segment's entropy.

    Returns (log-probs (C,), entropy (S,)).
    """
    top = torch.full((num_segments,), -torch.inf, dtype=logits.dtype).scatter_reduce(
        0, segment, logits.detach(), reduce="amax"
    )
    shifted = logits - top[segment]
    total = torch.zeros(num_segments, dtype=logits.dtype).index_add(0, segment, shifted.exp())
    log_p = shifted - total.log()[segment]
    entropy = -torch.zeros(num_segments, dtype=logits.dtype).index_add(0, segment, log_p.exp() * log_p)
    return log_p, entropy


def chosen_log_probs(log_p: torch.Tensor, packed: PackedSteps, chosen: torch.Tensor) -> torch.Tensor:
    """log pi of each step's chosen candidate: `chosen` (S,) indices within the step's candidates -> (S,)."""
    return log_p[packed.first + chosen]
