"""AlfworldEnv on the real TextWorld engine: rewards, step limit, invalid actions, replay, prompt, parsing."""

from __future__ import annotations

import random

import pytest

from verl_agent_ext.envs.alfworld.env import NOTHING_HAPPENS, AlfworldEnv
from verl_agent_ext.envs.alfworld.games import read_traj_data
from verl_agent_ext.envs.alfworld.prompt import COMPACT_TEMPLATE, PromptConfig
from verl_agent_ext.envs.base import Task, Turn
from verl_agent_ext.envs.registry import make_env


def walkthrough(task: Task) -> list[str]:
    import json
    from pathlib import Path

    return json.loads((Path(task.task_id) / "game.tw-pddl").read_text())["walkthrough"]


def test_registry_builds_the_env():
    env = make_env("alfworld", max_steps=7)
    assert isinstance(env, AlfworldEnv) and env.max_steps == 7


def test_reset_gives_task_observation_and_admissible_actions(task_per_type):
    env = AlfworldEnv()
    task = task_per_type["pick_heat_then_place_in_recep"]
    obs = env.reset(task)
    assert obs.text.startswith("You are in the middle of a room.")
    assert "Welcome" not in obs.text and "Your task" not in obs.text
    assert obs.anchor == obs.text
    target = read_traj_data(task.task_id)["pddl_params"]["object_target"].lower()
    assert target in obs.task_description and ("heat" in obs.task_description or "hot" in obs.task_description)
    assert any(action.startswith("go to ") for action in obs.admissible_actions)
    assert env.current_task == task and env.steps_taken == 0


@pytest.mark.parametrize("won_reward", [10.0, 1.0])
def test_walkthrough_wins_with_configured_reward(task_per_type, won_reward):
    env = AlfworldEnv(won_reward=won_reward)
    for task in task_per_type.values():
        env.reset(task)
        actions = walkthrough(task)
        for i, action in enumerate(actions):
            result = env.step(action)
            last = i == len(actions) - 1
            assert not result.invalid
            assert result.done == last and result.won == last
            assert result.reward == (won_reward if last else 0.0)
        assert result.info["won"] and result.info["task_type"] == task.task_type and not result.info["truncated"]
        with pytest.raises(RuntimeError, match="episode is over"):
            env.step("look")


def test_step_limit_truncates(task_per_type):
    env = AlfworldEnv(max_steps=3)
    env.reset(task_per_type["pick_and_place_simple"])
    results = [env.step("look") for _ in range(3)]
    assert [r.done for r in results] == [False, False, True]
    assert results[-1].info["truncated"] and not results[-1].won and results[-1].reward == 0.0


BAD_ACTIONS = [
    "",
    "   ",
    "\n\t",
    "asdf qwer",
    "go to the moon",
    "<action>look</action>",
    "🍎 take äpple 1 ∞",
    "x" * 10_000,
]


@pytest.mark.parametrize("action", BAD_ACTIONS, ids=range(len(BAD_ACTIONS)))
def test_bad_actions_are_invalid_and_change_nothing(task_per_type, action):
    env = AlfworldEnv()
    task = task_per_type["pick_clean_then_place_in_recep"]
    first = env.reset(task)
    result = env.step(action)
    assert result.invalid and result.invalid_reason and not result.done and result.reward == 0.0
    assert result.observation.text == NOTHING_HAPPENS
    assert result.observation.admissible_actions == first.admissible_actions
    assert result.info["invalid_reason"] == result.invalid_reason
    # The state did not move: the walkthrough still wins from here.
    for step in walkthrough(task):
        result = env.step(step)
    assert result.won


def test_actions_match_up_to_case_and_whitespace(task_per_type):
    env = AlfworldEnv()
    obs = env.reset(task_per_type["pick_and_place_simple"])
    action = obs.admissible_actions[0]
    result = env.step("  " + action.upper().replace(" ", "   ") + " \n")
    assert not result.invalid and result.observation.text != NOTHING_HAPPENS


def play_random(env: AlfworldEnv, task: Task, steps: int, seed: int):
    rng = random.Random(seed)
    observations = [env.reset(task)]
    actions: list[str] = []
    for _ in range(steps):
        action = rng.choice(observations[-1].admissible_actions)
        result = env.step(action)
        actions.append(action)
        observations.append(result.observation)
        if result.done:
            break
    return actions, observations


def test_same_game_same_actions_same_observations(task_per_type):
    task = task_per_type["pick_two_obj_and_place"]
    first = play_random(AlfworldEnv(), task, steps=15, seed=3)
    second = play_random(AlfworldEnv(), task, steps=15, seed=3)
    assert first == second


@pytest.mark.parametrize("task_type", ["look_at_obj_in_light", "pick_cool_then_place_in_recep"])
def test_replay_restores_observation_and_admissible_actions(task_per_type, task_type):
    env = AlfworldEnv()
    task = task_per_type[task_type]
    actions, observations = play_random(env, task, steps=12, seed=7)
    for prefix in (0, 1, len(actions) // 2, len(actions)):
        restored = env.replay(actions[:prefix])
        assert restored == observations[prefix]
    # Replay then continue: the next step matches the original episode too.
    env.replay(actions[:4])
    assert env.step(actions[4]).observation == observations[5]


def test_anchor_can_include_inventory(task_per_type):
    task = task_per_type["pick_and_place_simple"]
    env = AlfworldEnv(anchor_inventory=True)
    env.reset(task)
    plan = walkthrough(task)
    take = next(i for i, action in enumerate(plan) if action.startswith("take "))
    for action in plan[: take + 1]:
        result = env.step(action)
    obj = plan[take].split(" from ")[0].removeprefix("take ")
    assert result.observation.anchor == f"{result.observation.text}\nCarrying: {obj}"
    assert env.reset(task).anchor.endswith("Carrying: nothing")


def test_prompt_shows_task_last_k_turns_observation_actions_and_format(task_per_type):
    env = AlfworldEnv(prompt=PromptConfig(history_turns=2))
    obs = env.reset(task_per_type["pick_and_place_simple"])
    history = [Turn(observation=f"obs {i}", action=f"act {i}") for i in range(5)]
    prompt = env.format_prompt(obs, history, step_index=5)
    assert obs.task_description in prompt and obs.text in prompt
    assert "obs 4" in prompt and "act 3" in prompt and "obs 2" not in prompt and "act 2" not in prompt
    assert all(action in prompt for action in obs.admissible_actions)
    assert "<think>" in prompt and "<action>" in prompt and "Step 6." in prompt
    bare = AlfworldEnv(prompt=PromptConfig(history_turns=0)).format_prompt(obs, history, 5)
    assert "obs 4" not in bare


def test_prompt_settings_from_a_config_mapping_with_a_named_template(task_per_type):
    # what `env.env_kwargs.alfworld.prompt={history_turns:0,max_actions:40,template:compact}` hands the env
    env = AlfworldEnv(prompt={"history_turns": 0, "max_actions": 40, "template": "compact"})
    assert env.prompt == PromptConfig(history_turns=0, max_actions=40, template=COMPACT_TEMPLATE)
    obs = env.reset(task_per_type["pick_and_place_simple"])
    assert env.format_prompt(obs, [], 0).startswith("Task: put ")
    with pytest.raises(ValueError, match="valid keys"):
        PromptConfig.from_value({"history": 0})
    with pytest.raises(ValueError, match="compact"):
        PromptConfig.from_value({"template": "short"})


def test_parse_action_reasons(task_per_type):
    env = AlfworldEnv()
    obs = env.reset(task_per_type["pick_and_place_simple"])
    action = obs.admissible_actions[0]
    ok = env.parse_action(f"<think>hm</think><action> {action.upper()} </action>", obs)
    assert ok.valid and ok.action == action
    missing = env.parse_action(action, obs)
    assert not missing.valid and "missing" in missing.reason
    wrong = env.parse_action("<action>fly away</action>", obs)
    assert not wrong.valid and "admissible" in wrong.reason
    huge = env.parse_action("<action>" + "y" * 10_000 + "</action>", obs)
    assert not huge.valid
    # An invalid parse still steps safely.
    assert env.step(wrong.action).invalid and env.step(missing.action if not missing.valid else "").invalid


def test_engine_leaves_sys_argv_alone(tmp_path):
    import sys

    from verl_agent_ext.envs.alfworld.generator import iter_generate

    before = list(sys.argv)
    (game,) = iter_generate(tmp_path, per_type=1, seed=77, task_types=("pick_and_place_simple",))
    AlfworldEnv().reset(Task("alfworld", str(game.path)))  # first translation of a new game in this process
    assert sys.argv == before


def test_close_releases_the_engine_and_the_env_can_start_again(task_per_type):
    env = AlfworldEnv()
    task = task_per_type["pick_and_place_simple"]
    first = env.reset(task)
    env.close()
    with pytest.raises(RuntimeError, match="before reset"):
        env.step("look")
    assert env.reset(task) == first
    env.close()


def test_closed_engines_are_reused_not_unloaded(task_per_type):
    # Many open/close cycles in one process (as a test suite or a restarted pool does): unloading the library
    # copy with dlclose crashed a later load; released copies are reset and reused instead.
    task = task_per_type["pick_heat_then_place_in_recep"]
    first = AlfworldEnv().reset(task)
    libraries = set()
    for _ in range(6):
        env = AlfworldEnv()
        assert env.reset(task) == first
        libraries.add(id(env._engine.unwrapped.downward_lib))
        env.close()
    assert len(libraries) == 1
