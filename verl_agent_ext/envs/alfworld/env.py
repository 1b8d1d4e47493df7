"""AlfworldEnv: one ALFWorld game at a time on the real TextWorld PDDL engine (Fast Downward underneath).

    env = AlfworldEnv(max_steps=50, won_reward=10.0)
    obs = env.reset(Task("alfworld", task_id="/games/pick_and_place_simple/0-00000"))
    result = env.step("go to countertop 1")      # StepResult; non-admissible text -> invalid, state unchanged
    obs = env.replay(["go to countertop 1"])     # same observation and admissible actions as after that step

The engine is TextWorld's `PddlEnv` behind ALFWorld's `AlfredDemangler` (so objects read "apple 1", as in the
official games). Each instance loads its own copy of the Fast Downward library, so many instances can share a
process. Invalid actions never reach the engine: ALFWorld would answer "Nothing happens." and change nothing,
which is exactly what this class returns, with `invalid=True` and the reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from verl_agent_ext.envs.alfworld.engine import make_engine, release_engine
from verl_agent_ext.envs.alfworld.games import ENV_NAME, game_file, read_traj_data
from verl_agent_ext.envs.alfworld.prompt import PromptConfig, format_prompt, split_intro
from verl_agent_ext.envs.base import Observation, ParsedAction, StepResult, Task, TextEnv, Turn
from verl_agent_ext.envs.text import match_admissible, parse_tagged_action

NOTHING_HAPPENS = "Nothing happens."
# The metric section of a translated SAS task: with the metric off, Fast Downward counts every action as cost 1.
SAS_METRIC_ON = "begin_metric\n1\nend_metric"
SAS_METRIC_OFF = "begin_metric\n0\nend_metric"


class AlfworldEnv(TextEnv):
    """ALFWorld on TextWorld's PDDL engine.

    max_steps: step limit; the step that reaches it ends the episode with info["truncated"] = True.
    won_reward: reward of the winning step (every other step: 0).
    anchor_inventory: append "Carrying: ..." to the anchor observation, so identical text with different hidden
        state (what the agent holds) is not grouped together by GiGPO.
    prompt: the prompt template (history length, wording): a PromptConfig or a mapping of its fields.
    """

    name = ENV_NAME

    def __init__(
        self,
        max_steps: int = 50,
        won_reward: float = 10.0,
        anchor_inventory: bool = False,
        prompt: PromptConfig | Mapping[str, Any] | None = None,
    ) -> None:
        if max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}")
        self.max_steps = max_steps
        self.won_reward = won_reward
        self.anchor_inventory = anchor_inventory
        self.prompt = PromptConfig.from_value(prompt)
        self._engine: Any = None
        self._loaded_file: Path | None = None
        self._task: Task | None = None
        self._task_description = ""
        self._task_type = ""
        self._observation: Observation | None = None
        self._steps = 0
        self._done = False

    # -- TextEnv -------------------------------------------------------------------------------------------

    @property
    def current_task(self) -> Task | None:
        return self._task

    @property
    def steps_taken(self) -> int:
        """Steps of the running episode (valid and invalid ones)."""
        return self._steps

    def reset(self, task: Task) -> Observation:
        path = game_file(task.task_id)
        engine = self._load(path)
        state = engine.reset()
        room, self._task_description = split_intro(state.feedback)
        self._task = task
        self._task_type = task.task_type or read_traj_data(path.parent)["task_type"]
        self._steps = 0
        self._done = False
        self._observation = self._make_observation(room, state["admissible_commands"])
        return self._observation

    def step(self, action: str) -> StepResult:
        if self._observation is None or self._task is None:
            raise RuntimeError("step() before reset(task)")
        if self._done:
            raise RuntimeError("the episode is over: call reset(task)")
        self._steps += 1
        admissible = self._observation.admissible_actions
        canonical = match_admissible(action, admissible) if isinstance(action, str) else None
        if canonical is None:
            reason = "empty action" if not isinstance(action, str) or not action.strip() else "not an admissible action"
            observation = self._make_observation(NOTHING_HAPPENS, admissible)
            return self._finish(observation, won=False, invalid=True, invalid_reason=reason)
        state, _, _ = self._engine.step(canonical)
        observation = self._make_observation(state.feedback, state["admissible_commands"])
        return self._finish(observation, won=bool(state["won"]), invalid=False, invalid_reason=None)

    def format_prompt(self, observation: Observation, history: Sequence[Turn], step_index: int) -> str:
        return format_prompt(observation, history, step_index, self.prompt)

    def parse_action(self, response: str, observation: Observation) -> ParsedAction:
        return parse_tagged_action(response, observation.admissible_actions)

    def close(self) -> None:
        """Hand this environment's Fast Downward library back for reuse (the env can be reset again)."""
        if self._engine is not None:
            release_engine(self._engine)
        self._engine = None
        self._loaded_file = None
        self._task = self._observation = None

    # -- extras used by the expert and the anchor -----------------------------------------------------------

    def plan(self, shortest: bool = False) -> list[str]:
        """An optimal action sequence from the current state to the goal (Fast Downward); [] if none.

        Fast Downward's replanning is a uniform-cost search (exhaustive, optimal) under the domain's action costs
        (most actions 1, clean / heat / cool / toggle / slice 5, look / examine / inventory 0): the plan is
        cost-optimal. shortest=True searches with every action costing 1 instead (the task's metric switched off),
        so the plan has the fewest actions; it is also 10-20x faster on clean / heat / cool tasks.
        """
        if self._engine is None:
            raise RuntimeError("no game loaded: call reset(task) first")
        pddl = self._engine.unwrapped
        state = pddl._pddl_state
        if not shortest:
            return list(state.replan(pddl._entity_infos))
        unit_cost = state.sas_replan.replace(SAS_METRIC_ON, SAS_METRIC_OFF, 1)
        state.downward_lib.load_sas_replan(unit_cost.encode("utf-8"))
        try:
            return list(state.replan(pddl._entity_infos))
        finally:
            state.downward_lib.load_sas_replan(state.sas_replan.encode("utf-8"))

    def state_facts(self) -> frozenset[str]:
        """The engine's PDDL facts: equal exactly when two states are the same (plans depend on nothing else)."""
        if self._engine is None:
            raise RuntimeError("no game loaded: call reset(task) first")
        return frozenset(str(fact) for fact in self._engine.unwrapped._pddl_state.facts)

    def inventory(self) -> list[str]:
        """Names of the objects the agent holds ("apple 1")."""
        pddl = self._engine.unwrapped
        infos = pddl._entity_infos
        return sorted(infos[f.arguments[1].name].name for f in pddl._pddl_state.facts if f.name == "holds")

    # -- internals -----------------------------------------------------------------------------------------

    def _load(self, path: Path) -> Any:
        if self._engine is None:
            self._engine = make_engine()
            self._loaded_file = None
        if self._loaded_file != path:
            self._engine.load(str(path))
            self._loaded_file = path
        return self._engine

    def _make_observation(self, text: str, admissible: Sequence[str]) -> Observation:
        text = text.strip()
        anchor = text
        if self.anchor_inventory:
            anchor = f"{text}\nCarrying: {', '.join(self.inventory()) or 'nothing'}"
        return Observation(
            text=text,
            anchor=anchor,
            admissible_actions=tuple(admissible),
            task_description=self._task_description,
        )

    def _finish(self, observation: Observation, won: bool, invalid: bool, invalid_reason: str | None) -> StepResult:
        truncated = not won and self._steps >= self.max_steps
        self._done = won or truncated
        self._observation = observation
        info = {
            "won": won,
            "task_type": self._task_type,
            "steps": self._steps,
            "truncated": truncated,
            "admissible_actions": list(observation.admissible_actions),
        }
        if invalid:
            info["invalid_reason"] = invalid_reason
        return StepResult(
            observation=observation,
            reward=self.won_reward if won else 0.0,
            done=self._done,
            won=won,
            invalid=invalid,
            invalid_reason=invalid_reason,
            info=info,
        )
