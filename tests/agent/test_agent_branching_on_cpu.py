"""3SPO's branching rollout through the real agent loop: forks, caps, stops, shared prefixes, replay checks."""

from __future__ import annotations

import asyncio
import contextlib
import itertools

import pytest
from omegaconf import OmegaConf

from verl_agent_ext.agent.state_score_store import reset_local_stores, state_score_store
from verl_agent_ext.credit.config import sspo_config_from
from verl_agent_ext.credit.sspo import branch_lineage
from verl_agent_ext.credit.state_scores import state_key

ROW = {"env_name": "corridor", "task_id": "corridor-3", "task_type": "walk", "split": "train"}


class ReplayingSession:
    """A corridor session (conftest) that also restores states by replay; `drift` makes the replay land elsewhere."""

    def __init__(self, session, log: list, drift: bool = False):
        self.session, self.log, self.drift = session, log, drift
        self.reset, self.step = session.reset, session.step
        self.format_prompt, self.parse_action = session.format_prompt, session.parse_action

    async def replay(self, actions):
        self.log.append(list(actions))
        return await asyncio.to_thread(self.session.env.replay, [*actions, "go right"] if self.drift else actions)


class ReplayPool:
    """The agent loop's pool protocol over the conftest's corridor pool, with replay."""

    env_name = "corridor"

    def __init__(self, corridors, drift: bool = False):
        self.corridors, self.drift = corridors, drift
        self.replays: list[list[str]] = []

    @contextlib.asynccontextmanager
    async def lease(self):
        async with self.corridors.lease() as session:
            yield ReplayingSession(session, self.replays, self.drift)


@pytest.fixture
def sspo_config(loop_config):
    """`sspo_config(n=1, **sspo)`: the loop's config with algorithm.adv_estimator=sspo and rollout.n = n."""

    def make(n: int = 1, **sspo):
        config = loop_config()
        config.merge_with(
            OmegaConf.create(
                {"algorithm": {"adv_estimator": "sspo", "sspo": sspo}, "actor_rollout_ref": {"rollout": {"n": n}}}
            )
        )
        return config

    return make


@pytest.fixture
def table():
    """The in-process score table the loop and the estimator share (fresh per test)."""
    reset_local_stores()
    yield lambda config: state_score_store(sspo_config_from(config.algorithm)).snapshot()
    reset_local_stores()


@pytest.fixture
def grow(tokenizer, scripted_server, corridor_pool):
    """`grow(config, respond, drift=False, **row) -> (outputs, loop, pool)`: one session through the agent loop."""
    from verl_agent_ext.agent.env_agent_loop import build_agent_loop

    def run(config, respond, drift=False, **row):
        pool = ReplayPool(corridor_pool, drift)
        loop = build_agent_loop(config, scripted_server(respond), tokenizer, env_pools=[pool])
        outputs = asyncio.run(loop.run({"temperature": 1.0}, **{**ROW, **row}))
        return outputs, loop, pool

    return run


def alternating():
    """Answers go right, go left, go right, ... in call order."""
    actions = itertools.cycle(["go right", "go left"])
    return lambda prompt: f"<action>{next(actions)}</action>"


def by_traj(outputs):
    trajs: dict[str, list] = {}
    for output in outputs:
        trajs.setdefault(output.extra_fields["traj_uid"], []).append(output)
    return trajs


def test_unseen_start_forks_within_the_caps(grow, table, sspo_config):
    config = sspo_config(max_trajectories_per_group=4, max_env_steps_per_group=12)
    outputs, loop, pool = grow(config, alternating())
    trajs = by_traj(outputs)
    # S(start) = 1 -> n = min(8, 4 trajectories, 12 steps) = 4 branches from the start. Depth first: the first plays
    # to env.max_steps (6, never winning), hands its 6 unused steps to the second; the last two get nothing: dropped
    stats = loop.last_tree_stats
    assert len(trajs) == 2 and stats.forks == 1 and stats.dropped == 2
    assert len(outputs) == stats.env_steps == 12
    assert [len(rows) for rows in trajs.values()] == [6, 6]
    assert pool.replays == [[]]  # the one played sibling restored the start by replay
    assert all(len(branch_lineage(uid)) == (1 if "/" not in uid else 2) for uid in trajs)
    first = [rows[0] for rows in trajs.values()]
    assert {o.extra_fields["anchor_obs"] for o in first} == {"cell 0"}
    assert len({tuple(o.prompt_ids) for o in first}) == 1  # the n siblings were prompted at the same state
    for output in outputs:  # next_anchor_obs is the state after the step (the final one included)
        assert output.extra_fields["next_anchor_obs"].startswith("cell ")


def test_known_start_continues_then_forks_with_a_shared_prefix(grow, table, sspo_config):
    config = sspo_config(max_trajectories_per_group=3, max_env_steps_per_group=30)
    start = state_key("cell 0")
    table(config).add_trajectories([([start], True)])  # S(start) = exp(-50 log 2): n = 1
    outputs, loop, _ = grow(config, lambda prompt: "<action>go right</action>")
    trajs = by_traj(outputs)
    assert len(trajs) == 3 and loop.last_tree_stats.forks == 1
    root = next(uid for uid in trajs if "/" not in uid)
    assert [o.extra_fields["step_index"] for o in trajs[root]] == [0, 1, 2]
    for uid, rows in trajs.items():
        if uid != root:  # forked at step 1 ("cell 1"); the shared step 0 is a row of the root only
            assert branch_lineage(uid)[-1][1] == 1
            assert [o.extra_fields["step_index"] for o in rows] == [1, 2]
            assert all(o.extra_fields["episode_success"] for o in rows)
    # every trajectory wins 10: the shared first step's episode score is their mean
    assert [o.reward_score for o in outputs] == [10.0] * len(outputs)


def test_exhausted_state_stops_the_branch(grow, table, sspo_config):
    config = sspo_config(max_trajectories_per_group=1)
    cell1 = state_key("cell 1")
    table(config).add_trajectories([([cell1], False)] * 10)  # 10 failures, no success: S(cell 1) = 0
    outputs, loop, _ = grow(config, lambda prompt: "<action>go right</action>")
    assert len(outputs) == 1 and loop.last_tree_stats.stops == 1  # stepped into cell 1, stopped there
    assert outputs[0].extra_fields["episode_truncated"] is True
    assert outputs[0].extra_fields["episode_success"] is False


def test_replay_that_lands_elsewhere_is_an_error(grow, table, sspo_config):
    config = sspo_config(max_trajectories_per_group=2, max_env_steps_per_group=12)  # the sibling gets 6 steps
    with pytest.raises(RuntimeError, match="not deterministic"):
        grow(config, alternating(), drift=True)


@pytest.mark.parametrize("case", ["branching_off", "validation"])
def test_single_path_when_branching_is_off_or_validating(grow, table, sspo_config, case):
    config = sspo_config(branching=case != "branching_off")
    outputs, _, _ = grow(config, alternating(), **({"split": "eval_in_distribution"} if case == "validation" else {}))
    assert len(by_traj(outputs)) == 1 and len(outputs) == 6  # one episode up to env.max_steps
    assert all("next_anchor_obs" in o.extra_fields for o in outputs)


def test_a_finished_branch_hands_its_steps_to_the_next(grow, table, sspo_config):
    config = sspo_config(max_trajectories_per_group=2, max_env_steps_per_group=8)  # 2 branches share 8 steps
    # calls: the two sampled at once at the start (both "go right": the order in which concurrent requests are
    # served cannot matter); branch 1 then wins in 3 steps (right, right, right); branch 2 needs 5 (right, left,
    # right, right, right): it wins on the 5 steps branch 1 leaves. After the fork the calls are sequential.
    script = iter(["go right", "go right", "go right", "go right", "go left", "go right", "go right", "go right"])
    outputs, loop, _ = grow(config, lambda prompt: f"<action>{next(script)}</action>")
    trajs = by_traj(outputs)
    assert sorted(len(rows) for rows in trajs.values()) == [3, 5] and loop.last_tree_stats.env_steps == 8
    assert all(rows[-1].extra_fields["episode_success"] for rows in trajs.values())
