"""CachedAlfworldEnv: ALFWorld with an exact transition cache, so replayed games cost microseconds per step.

Usage (drop-in for `AlfworldEnv`; same observations, rewards, `done`, `info`, prompts and parsing):

    train, held_out = train_heldout_tasks(train_per_type=10, heldout_per_type=5)   # disjoint, all 6 task types
    env = CachedAlfworldEnv(max_steps=50)          # persist=True: also load / save tables on disk
    obs = env.reset(train[0])
    result = env.step(obs.admissible_actions[0])
    env.cache_stats()                              # {"hits", "misses", "jumps", "states", "transitions"}
    env.save_cache()                               # only with persist=True (also done by close())

Every game has one `TransitionTable` per process, shared by all instances: the engine's world states, interned by
a digest of the PDDL facts the game's text can depend on (`readable_negations`), the admissible commands of each
state, and the transitions (state, command) -> (next state, feedback text, won). A step whose (state, command)
is in the table never touches the engine; a miss brings the engine to the current state (one engine step if it is
there already, else the start state plus the recorded PDDL operators of the episode's transitions, checked by
digest) and records the engine's answer. The observation is exact because TextWorld's PDDL engine is a pure
function of its facts: the feedback is derived from the grammar with the facts and the command's bindings (first
matching rule, no random choice, no history), the admissible commands and `won` from Fast Downward's state, which
the positive facts determine. The engine also keeps a negated fact for everything an action deleted; those the
grammar never names cannot change any text and are left out of the key, so paths that reach one world state share
it. What depends on more than (state, command) is computed exactly as `AlfworldEnv` does: invalid text ("Nothing
happens.", state unchanged, never sent to the engine) and the step limit (`done` / `info["truncated"]`).
Keying by the command history instead would be exact too, but shares nothing between paths that reach the same
state (see benchmarks/bench_arena_envs.py for the hit rates of both keys).

Persistence (persist=True): tables live in $VERL_AGENT_EXT_CACHE/alfworld/transitions-v<N>/<game digest>.pkl,
keyed by the game file's content and versioned by CACHE_VERSION and the textworld / alfworld versions; a save
merges with what is on disk both ways (the file gets this process's states, this process gets what other processes
added since) and replaces the file atomically; a table that holds nothing new is not written again.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import pickle
import re
import sys
import tempfile
from collections import Counter, OrderedDict, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from verl_agent_ext.envs.alfworld.engine import make_engine, release_engine
from verl_agent_ext.envs.alfworld.env import NOTHING_HAPPENS, AlfworldEnv
from verl_agent_ext.envs.alfworld.games import game_file, generated_tasks, read_traj_data
from verl_agent_ext.envs.alfworld.generator import TASK_TYPES, cache_root
from verl_agent_ext.envs.alfworld.prompt import split_intro
from verl_agent_ext.envs.base import Observation, StepResult, Task
from verl_agent_ext.envs.text import normalise

CACHE_VERSION = 2  # 2: the state key leaves out negated facts the game's text cannot read


@functools.cache
def _engine_versions() -> str:
    names = []
    for package in ("textworld", "alfworld", "fast-downward-textworld"):
        try:
            names.append(f"{package}={version(package)}")
        except PackageNotFoundError:
            names.append(f"{package}=?")
    return ",".join(names)


def facts_digest(facts: frozenset[str]) -> bytes:
    """16-byte digest of a world state's PDDL facts (order-free)."""
    return hashlib.blake2b("\n".join(sorted(facts)).encode(), digest_size=16).digest()


_GRAMMAR_BLOCKS = re.compile(r'"""(.*?)"""', re.DOTALL)
_BRACES = re.compile(r"\{([^{}]*)\}")
_STRING_LITERALS = re.compile(r"'[^']*'|\"[^\"]*\"")
_NONTERMINALS = re.compile(r"#[^#]*#")
_PURE_EXPRESSION = re.compile(r"(\s+|\+|[A-Za-z_]\w*(\.\w+)*)*")  # attribute reads joined by + / or
_NEGATED_NAMES = re.compile(r"\bnot_\w+")


def readable_negations(game_data: dict[str, Any]) -> frozenset[str] | None:
    """Names of the negated facts the game's text can read (e.g. {"not_inreceptacle"}); None: maybe any.

    The engine keeps a negated fact (`not_atlocation(agent1, loc 3)`) for every fact an action deleted, so two
    paths to one world state can leave different fact sets, and the grammar may read some of them (ALFWorld's
    `overview(o)` tests `not_inreceptacle`). Grammar conditions match facts by predicate name, so a negated fact
    is readable only if its name appears in the grammar or the domain, provided every `{...}` expression only
    reads attributes of bound variables (string literals, `+`, `or` allowed); otherwise None. Admissible commands
    and `won` come from Fast Downward's state, which the positive facts determine.
    """
    texts = [game_data["pddl_domain"]]
    try:
        for block in _GRAMMAR_BLOCKS.findall(game_data["grammar"]):
            for rules in json.loads(block).values():
                texts += [text for rule in rules for text in (rule.get("rhs"), rule.get("condition")) if text]
    except (ValueError, AttributeError, TypeError):
        return None
    if len(texts) == 1:
        return None
    for text in texts:
        for body in _BRACES.findall(_NONTERMINALS.sub("", text)):
            expression = _STRING_LITERALS.sub("", body.partition("|")[0])
            if not _PURE_EXPRESSION.fullmatch(expression):
                return None
            if {word.split(".")[0] for word in expression.split()} & {"self", "context"}:
                return None
    return frozenset(name for text in texts for name in _NEGATED_NAMES.findall(text))


@dataclass
class TransitionTable:
    """What the engine answered on one game, keyed by world state.

    digests[s]: the facts digest of state s; admissible[s]: its admissible commands (engine order);
    inventory[s]: what the agent holds there (for anchor_inventory); transitions[(s, command)] =
    (next state, feedback text stripped, won); initial = (state, room text, task description) after reset;
    plans[(s, shortest)]: `AlfworldEnv.plan` from s; operators[(s, command)] = (PDDL operator id, number of effect
    atoms) and canonical[s] = {normalised command: admissible command}, in memory only (not written to disk).
    """

    game_key: str
    digests: list[bytes] = field(default_factory=list)
    admissible: list[tuple[str, ...]] = field(default_factory=list)
    inventory: list[tuple[str, ...]] = field(default_factory=list)
    transitions: dict[tuple[int, str], tuple[int, str, bool]] = field(default_factory=dict)
    initial: tuple[int, str, str] | None = None
    plans: dict[tuple[int, bool], tuple[str, ...]] = field(default_factory=dict)
    operators: dict[tuple[int, str], tuple[int, int]] = field(default_factory=dict, repr=False)
    canonical: dict[int, dict[str, str]] = field(default_factory=dict, repr=False)
    _ids: dict[bytes, int] = field(default_factory=dict, repr=False)
    _shared: dict[Any, Any] = field(default_factory=dict, repr=False)
    _synced: tuple[int, int, int, bool] = field(default=(0, 0, 0, False), repr=False)

    @property
    def size(self) -> tuple[int, int, int, bool]:
        """(states, transitions, plans, initial known): tables only grow, so an equal size means no change."""
        return len(self.digests), len(self.transitions), len(self.plans), self.initial is not None

    @property
    def changed(self) -> bool:
        """Whether it holds anything its file did not when last read or written (`save_table` marks it)."""
        return self.size != self._synced

    def intern(self, digest: bytes, admissible: Sequence[str], inventory: Sequence[str]) -> int:
        """The id of the state with `digest`, added if new; a known state must answer the same commands."""
        state = self._ids.get(digest)
        if state is None:
            state = len(self.digests)
            self._ids[digest] = state
            self.digests.append(digest)
            self.admissible.append(self.share(tuple(map(sys.intern, admissible))))
            self.inventory.append(self.share(tuple(inventory)))
        elif self.admissible[state] != tuple(admissible):
            raise RuntimeError(f"ALFWorld cache: state {state} of {self.game_key} answered other admissible commands")
        return state

    def share(self, value: Any) -> Any:
        """One object per equal value (states repeat command lists and texts: memory, not speed)."""
        return self._shared.setdefault(value, value)

    def merge(self, other: TransitionTable) -> None:
        """Add `other`'s states and transitions (same game), renumbering its states by digest."""
        remap = [
            self.intern(digest, admissible, inventory)
            for digest, admissible, inventory in zip(other.digests, other.admissible, other.inventory, strict=True)
        ]
        for (state, command), (next_state, text, won) in other.transitions.items():
            self.transitions.setdefault((remap[state], command), (remap[next_state], self.share(text), won))
        for (state, shortest), plan in other.plans.items():
            self.plans.setdefault((remap[state], shortest), plan)
        if self.initial is None and other.initial is not None:
            state, room, task = other.initial
            self.initial = (remap[state], room, task)

    def __getstate__(self) -> dict[str, Any]:
        # Operator ids come from this process's PDDL translation: they are not written to disk.
        return {k: v for k, v in self.__dict__.items() if k not in _NOT_PICKLED}

    def __setstate__(self, state: dict[str, Any]) -> None:
        state.setdefault("plans", {})
        self.__dict__.update(state)
        self._ids = {digest: index for index, digest in enumerate(self.digests)}
        self._shared = {}  # pickle kept equal objects shared
        self.operators, self.canonical = {}, {}
        self._synced = self.size


_NOT_PICKLED = ("_ids", "_shared", "operators", "canonical", "_synced")
_TABLES: dict[str, TransitionTable] = {}
_GAME_KEYS: dict[tuple[str, int, int], str] = {}


def game_key(path: Path) -> str:
    """Content digest of a game file (memoised by path, size and modification time)."""
    stat = path.stat()
    memo = (str(path), stat.st_size, stat.st_mtime_ns)
    key = _GAME_KEYS.get(memo)
    if key is None:
        key = hashlib.sha256(path.read_bytes()).hexdigest()[:24]
        _GAME_KEYS[memo] = key
    return key


def cache_dir() -> Path:
    """Folder of the persisted tables (versioned: a new engine or format never reads old tables)."""
    tag = hashlib.sha256(_engine_versions().encode()).hexdigest()[:8]
    return cache_root() / "alfworld" / f"transitions-v{CACHE_VERSION}-{tag}"


def _table_file(key: str) -> Path:
    return cache_dir() / f"{key}.pkl"


def _read_table(key: str) -> TransitionTable | None:
    path = _table_file(key)
    if not path.is_file():
        return None
    with path.open("rb") as handle:
        payload = pickle.load(handle)
    if payload.get("version") != CACHE_VERSION or payload["table"].game_key != key:
        return None
    return payload["table"]


def save_table(table: TransitionTable) -> Path:
    """Merge `table` with its file on disk (both ways: what other processes added since comes into `table` too)
    and write it atomically; returns the file. A table holding nothing new since it was last read or written is
    not written again."""
    path = _table_file(table.game_key)
    if not table.changed and path.is_file():
        return path
    on_disk = _read_table(table.game_key)
    if on_disk is not None:
        table.merge(on_disk)  # appends states: ids in use stay valid
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, staging = tempfile.mkstemp(prefix=".staging-", dir=path.parent)
    with os.fdopen(handle, "wb") as out:
        pickle.dump({"version": CACHE_VERSION, "table": table}, out, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(staging, path)
    table._synced = table.size
    return path


def get_table(key: str, persist: bool) -> TransitionTable:
    """The process-wide table of game `key` (loaded from disk on first use when `persist`)."""
    table = _TABLES.get(key)
    if table is None:
        table = (_read_table(key) if persist else None) or TransitionTable(key)
        _TABLES[key] = table
    return table


def clear_tables() -> None:
    """Forget every in-memory table of this process (the files on disk stay)."""
    _TABLES.clear()


class CachedAlfworldEnv(AlfworldEnv):
    """`AlfworldEnv` answering from the per-game transition tables, falling back to the engine on a miss.

    persist: load a game's table from disk on first use and write the tables back on `save_cache` / `close`.
    max_engines: engines kept loaded, one per game, least recently used evicted (each maps its own Fast Downward
        library, about 10 MB resident): a miss on a game whose engine is loaded costs no reload.
    Other arguments: those of `AlfworldEnv`. `plan` is memoised per state; on a new state it and `state_facts`
    bring the engine to the current state first (they need it).
    """

    def __init__(self, *args: Any, persist: bool = False, max_engines: int = 16, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if max_engines < 1:
            raise ValueError(f"max_engines must be >= 1, got {max_engines}")
        self.persist = persist
        self.max_engines = max_engines
        self._engines: OrderedDict[Path, Any] = OrderedDict()  # game file -> its loaded engine, least recent first
        self._readable_negations: dict[Path, frozenset[str] | None] = {}  # game file -> negated facts in its key
        self._starts: dict[Path, tuple[Any, int, tuple]] = {}  # game file -> (PddlState, start state id, its facts)
        self._table: TransitionTable | None = None
        self._path_file: Path | None = None
        self._state = -1
        self._commands: list[str] = []  # valid commands of this episode, in order
        self._states: list[int] = []  # the state each of them was sent in
        self._engine_depth: int | None = None  # commands of this episode the engine has applied; None: not reset
        self._used: set[str] = set()
        self.hits = 0
        self.misses = 0
        self.jumps = 0  # engine set to a state through recorded operators (instead of a replay of the commands)

    # -- TextEnv -------------------------------------------------------------------------------------------

    def reset(self, task: Task) -> Observation:
        path = game_file(task.task_id)
        table = get_table(game_key(path), self.persist)
        if self._table is not table:
            self._table = table
            self._used.add(table.game_key)
        self._path_file = path
        self._engine_depth = None
        self._commands, self._states = [], []
        if table.initial is None:
            engine = self._load(path)
            state = engine.reset()
            room, description = split_intro(state.feedback)
            table.initial = (self._record_state(state["admissible_commands"]), room, description)
            self._engine_depth = 0
        self._state, room, self._task_description = table.initial
        self._task = task
        self._task_type = task.task_type or read_traj_data(path.parent)["task_type"]
        self._steps = 0
        self._done = False
        self._observation = self._make_observation(room, table.admissible[self._state])
        return self._observation

    def step(self, action: str) -> StepResult:
        if self._observation is None or self._task is None or self._table is None:
            raise RuntimeError("step() before reset(task)")
        if self._done:
            raise RuntimeError("the episode is over: call reset(task)")
        self._steps += 1
        admissible = self._observation.admissible_actions
        canonical = self._canonical_command(action) if isinstance(action, str) else None
        if canonical is None:
            reason = "empty action" if not isinstance(action, str) or not action.strip() else "not an admissible action"
            observation = self._make_observation(NOTHING_HAPPENS, admissible)
            return self._finish(observation, won=False, invalid=True, invalid_reason=reason)
        answer = self._table.transitions.get((self._state, canonical))
        if answer is None:
            self.misses += 1
            answer = self._engine_step(canonical)
        else:
            self.hits += 1
        self._commands.append(canonical)
        self._states.append(self._state)
        self._state, text, won = answer
        observation = self._make_observation(text, self._table.admissible[self._state])
        return self._finish(observation, won=won, invalid=False, invalid_reason=None)

    def close(self) -> None:
        if self.persist:
            self.save_cache()
        while self._engines:
            release_engine(self._engines.popitem()[1])
        self._starts.clear()
        self._engine = None
        super().close()
        self._table = None
        self._engine_depth = None

    # -- cache ---------------------------------------------------------------------------------------------

    def cache_stats(self) -> dict[str, int]:
        """This instance's hits, misses and operator jumps, and the size of the current game's table."""
        table = self._table
        return {
            "hits": self.hits,
            "misses": self.misses,
            "jumps": self.jumps,
            "states": len(table.digests) if table else 0,
            "transitions": len(table.transitions) if table else 0,
        }

    def save_cache(self) -> list[Path]:
        """Write the tables of every game this instance played to disk (merged with what is there)."""
        return [save_table(_TABLES[key]) for key in sorted(self._used) if key in _TABLES]

    # -- engine-backed extras: bring the engine to the current state first -----------------------------------

    def plan(self, shortest: bool = False) -> list[str]:
        """`AlfworldEnv.plan` of the current state, memoised per state (Fast Downward's search is deterministic)."""
        if self._table is None or self._state < 0:
            raise RuntimeError("no game loaded: call reset(task) first")
        key = (self._state, shortest)
        plan = self._table.plans.get(key)
        if plan is None:
            self._sync_engine()
            plan = tuple(super().plan(shortest))
            self._table.plans[key] = plan
        return list(plan)

    def state_facts(self) -> frozenset[str]:
        self._sync_engine()
        return super().state_facts()

    def inventory(self) -> list[str]:
        if self._table is not None and self._state >= 0:
            return list(self._table.inventory[self._state])
        return super().inventory()

    # -- internals -----------------------------------------------------------------------------------------

    def _canonical_command(self, action: str) -> str | None:
        """The admissible command `match_admissible` would pick (first one equal up to case and whitespace)."""
        lookup = self._table.canonical.get(self._state)
        if lookup is None:
            lookup = {}
            for command in self._table.admissible[self._state]:
                lookup.setdefault(normalise(command), command)
            self._table.canonical[self._state] = lookup
        found = lookup.get(action)
        return found if found is not None else lookup.get(normalise(action))

    def _load(self, path: Path) -> Any:
        """The engine holding game `path`: one per game (loading a game costs 10 engine steps), LRU-evicted."""
        engine = self._engines.pop(path, None)
        if engine is None:
            if len(self._engines) >= self.max_engines:
                evicted, old_engine = self._engines.popitem(last=False)
                self._starts.pop(evicted, None)
                release_engine(old_engine)
            engine = make_engine()
            engine.load(str(path))
            self._readable_negations[path] = readable_negations(engine.unwrapped._game_data)
        self._engines[path] = engine
        self._engine, self._loaded_file = engine, path
        return engine

    def _sync_engine(self) -> Any:
        """Bring the engine to this episode's current state and return it.

        One command behind: step it. Further behind (or not reset for this episode): rebuild the game's start
        state and apply the PDDL operators of the episode's transitions directly, without deriving any text,
        then derive the admissible commands once; they and the facts digest must match the state's. Transitions whose
        operator this process never saw (tables read from disk) are replayed through the engine instead.
        """
        if self._path_file is None:
            raise RuntimeError("no game loaded: call reset(task) first")
        engine = self._load(self._path_file)
        behind = None if self._engine_depth is None else len(self._commands) - self._engine_depth
        if behind is None or behind > 1:
            if self._jump_engine(engine):
                return engine
            if self._engine_depth is None:
                engine.reset()
                self._engine_depth = 0
        for state, command in zip(
            self._states[self._engine_depth :], self._commands[self._engine_depth :], strict=True
        ):
            self._record_operator(state, command)
            engine.step(command)
        self._engine_depth = len(self._commands)
        return engine

    def _jump_engine(self, engine: Any) -> bool:
        """Set the engine to the current state through the recorded operators; False if any is unknown.

        From the start state: Fast Downward's registry keeps every state it reached since the game's last reset,
        so its start is restored by id and the Python facts from a copy (`_starts`); the first jump after a
        reset builds a fresh start state instead (as `reset` does, about two engine steps).
        """
        operators = self._table.operators
        plan = [operators.get(key) for key in zip(self._states, self._commands, strict=True)]
        if any(step is None for step in plan):
            return False
        from fast_downward import Operator
        from textworld.core import GameState
        from textworld.envs.pddl.logic import PddlState

        pddl = engine.unwrapped
        start = self._starts.get(self._loaded_file)
        if start is not None and start[0] is pddl._pddl_state:
            state = pddl._pddl_state
            state.downward_lib.set_state_id(start[1])
            _restore_facts(state, start[2])
        else:
            state = PddlState(pddl.downward_lib, pddl._game_data["pddl_problem"], pddl._logic)
            self._starts[self._loaded_file] = (state, state.downward_lib.get_state_id(), _copy_facts(state))
        for operator_id, effects in plan:
            state._operators = {operator_id: Operator(operator_id, b"", effects)}
            state.apply(SimpleNamespace(id=operator_id))
        pddl._pddl_state, pddl.prev_state, pddl.state, pddl._last_action = state, None, GameState(), None
        pddl._moves = len(plan)
        pddl._gather_infos()
        # The facts check the Python side, the admissible commands (Fast Downward's applicable operators) the planner.
        if (
            self._state_digest() != self._table.digests[self._state]
            or tuple(pddl.state["admissible_commands"]) != self._table.admissible[self._state]
        ):
            raise RuntimeError(f"ALFWorld cache: replaying the operators of {self._table.game_key} missed the state")
        self._engine_depth = len(self._commands)
        self.jumps += 1
        return True

    def _record_operator(self, state: int, command: str) -> None:
        """Remember the PDDL operator `command` applies in the engine's current state (before stepping it)."""
        pddl = self._engine.unwrapped
        action = pddl.state["_valid_actions"][pddl.state["_valid_commands"].index(command)]
        operator = pddl._pddl_state._operators[action.id]
        self._table.operators[(state, command)] = (operator.id, operator.nb_effect_atoms)

    def _engine_step(self, command: str) -> tuple[int, str, bool]:
        engine = self._sync_engine()
        self._record_operator(self._state, command)
        state, _, _ = engine.step(command)
        self._engine_depth += 1
        text = self._table.share(state.feedback.strip())
        answer = (self._record_state(state["admissible_commands"]), text, bool(state["won"]))
        self._table.transitions[(self._state, command)] = answer
        return answer

    def _record_state(self, admissible: Sequence[str]) -> int:
        """Intern the engine's current state (it must be at that state)."""
        return self._table.intern(self._state_digest(), admissible, AlfworldEnv.inventory(self))

    def _state_digest(self) -> bytes:
        """Digest of the engine's facts, leaving out the negated facts the game's text cannot read."""
        facts = self._engine.unwrapped._pddl_state.facts
        readable = self._readable_negations.get(self._loaded_file)
        if readable is not None:
            facts = (fact for fact in facts if not fact.is_negation or fact.name in readable)
        return facts_digest(frozenset(str(fact) for fact in facts))


def _copy_facts(state: Any) -> tuple:
    """The Python side of a TextWorld state (what `textworld.logic.State.copy` copies)."""
    return (
        {signature: set(facts) for signature, facts in state._facts.items()},
        dict(state._vars_by_name),
        {kind: set(variables) for kind, variables in state._vars_by_type.items()},
        Counter(state._var_counts),
    )


def _restore_facts(state: Any, copied: tuple) -> None:
    """Put a `_copy_facts` copy back into `state` (copied again: the copy serves every later jump)."""
    facts, by_name, by_type, counts = copied
    state._facts = defaultdict(set, {signature: set(values) for signature, values in facts.items()})
    state._vars_by_name = dict(by_name)
    state._vars_by_type = defaultdict(set, {kind: set(variables) for kind, variables in by_type.items()})
    state._var_counts = Counter(counts)


def train_heldout_tasks(
    train_per_type: int = 10, heldout_per_type: int = 5, seed: int = 0, progress: Any = None
) -> tuple[list[Task], list[Task]]:
    """Disjoint generated training and held-out ALFWorld games, each covering all 6 task types.

    Training games: the generated "train" split; held-out: the generated "eval_in_distribution" split (other
    seeds, same rooms), minus any game whose file equals a training game's. Generated on first use, cached on disk.
    """
    if train_per_type < 1 or heldout_per_type < 1:
        raise ValueError(f"train_per_type and heldout_per_type must be >= 1, got {train_per_type}, {heldout_per_type}")
    train = generated_tasks("train", per_type=train_per_type, seed=seed, progress=progress)
    held_out = generated_tasks("eval_in_distribution", per_type=heldout_per_type, seed=seed, progress=progress)
    train_keys = {game_key(game_file(task.task_id)) for task in train}
    held_out = [task for task in held_out if game_key(game_file(task.task_id)) not in train_keys]
    for name, tasks in (("training", train), ("held-out", held_out)):
        missing = set(TASK_TYPES) - {task.task_type for task in tasks}
        if missing:
            raise RuntimeError(f"generated {name} games miss task types {sorted(missing)}")
    return train, held_out
