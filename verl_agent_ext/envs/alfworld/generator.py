"""Procedurally generated ALFWorld games, written in the official on-disk layout.

The `alfworld` package ships the PDDL domain, the text grammar, the room layouts (`gen/layouts/FloorPlan*`) and
ALFRED's object vocabulary, but no game files. This module builds ALFRED-style PDDL problems from those parts:

    layout (receptacles + their poses)  ->  keep some receptacles  ->  place target + distractor objects
    ->  goal for the task type  ->  Fast Downward checks it is solvable  ->  <out>/<task_type>/<name>/
        game.tw-pddl    {"pddl_domain", "grammar" (goal text filled in), "pddl_problem", "solvable", "walkthrough"}
        traj_data.json  {"task_type", "pddl_params", "scene", "turk_annotations", "generator"}

so `games.py` loads generated and official games the same way, and ALFWorld's handcoded expert (which reads
`traj_data.json`) runs on them. Everything is deterministic in (seed, task type, index, config).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any

TASK_TYPES = (
    "pick_and_place_simple",
    "look_at_obj_in_light",
    "pick_clean_then_place_in_recep",
    "pick_heat_then_place_in_recep",
    "pick_cool_then_place_in_recep",
    "pick_two_obj_and_place",
)
# The appliance each state-changing task needs (also excluded as the final receptacle, which would be odd).
APPLIANCE = {
    "pick_clean_then_place_in_recep": "SinkBasin",
    "pick_heat_then_place_in_recep": "Microwave",
    "pick_cool_then_place_in_recep": "Fridge",
}
OBJECT_PROPERTY = {
    "pick_clean_then_place_in_recep": "Cleanable",
    "pick_heat_then_place_in_recep": "Heatable",
    "pick_cool_then_place_in_recep": "Coolable",
}
LAMPS = ("DeskLamp", "FloorLamp")
# Receptacles a lamp can stand on (ToggleObject needs the lamp in a receptacle at the agent's location).
LAMP_HOLDERS = ("SideTable", "Desk", "Dresser", "DiningTable", "CoffeeTable", "Shelf", "TVStand", "ArmChair", "Sofa")
# Basin receptacles are named after their parent in AI2-THOR ids ("Sink|...|SinkBasin"); their class is the suffix.
BASINS = ("SinkBasin", "BathtubBasin")
# The rooms ALFRED keeps out of training (its valid_unseen scenes, ALFWorld's eval_out_of_distribution).
UNSEEN_FLOOR_PLANS = frozenset({"FloorPlan10", "FloorPlan219", "FloorPlan308", "FloorPlan424"})
ROOM_SETS = ("seen", "unseen", "all")


@dataclass(frozen=True)
class GeneratorConfig:
    """Difficulty knobs of generated games.

    max_receptacles: receptacles kept from the layout (those the task needs are always kept).
    distractors: non-target objects placed in the room.
    extra_targets: up to this many additional instances of the target class (more choice, more to search).
    closed_target_prob: probability that each target instance starts inside a closed (openable) receptacle.
    rooms: "seen" (ALFRED's training rooms), "unseen" (its 4 held-out rooms, one per room type) or "all".
    """

    max_receptacles: int = 12
    distractors: int = 6
    extra_targets: int = 1
    closed_target_prob: float = 0.3
    rooms: str = "seen"

    def __post_init__(self) -> None:
        if self.max_receptacles < 3:
            raise ValueError(f"max_receptacles must be >= 3, got {self.max_receptacles}")
        if self.distractors < 0 or self.extra_targets < 0:
            raise ValueError("distractors and extra_targets must be >= 0")
        if not 0.0 <= self.closed_target_prob <= 1.0:
            raise ValueError(f"closed_target_prob must be in [0, 1], got {self.closed_target_prob}")
        if self.rooms not in ROOM_SETS:
            raise ValueError(f"unknown room set {self.rooms!r}; valid names: {list(ROOM_SETS)}")


@dataclass(frozen=True)
class _Receptacle:
    thor_id: str  # "Cabinet|+00.68|+00.50|-02.20"
    cls: str  # "Cabinet"
    location: str  # "loc|3|-5|180|30"


@dataclass(frozen=True)
class _Object:
    thor_id: str
    cls: str
    receptacle: _Receptacle


@dataclass(frozen=True)
class _Room:
    floor_plan: str
    receptacles: tuple[_Receptacle, ...]
    object_classes: frozenset[str]  # object classes AI2-THOR places in this scene


@dataclass(frozen=True)
class GeneratedGame:
    """One game: where it was written and what it asks."""

    path: Path  # the game folder (holds game.tw-pddl and traj_data.json)
    task_type: str
    task_description: str
    walkthrough_length: int


# ---------------------------------------------------------------------------------------------------------------
# ALFWorld's vocabulary and files, read from the installed package.


@cache
def _alfworld_files() -> tuple[str, str, Path]:
    """(PDDL domain text, grammar text, layouts folder) shipped with the alfworld package."""
    from verl_agent_ext.envs.alfworld.engine import require_alfworld

    require_alfworld()
    import alfworld.info

    domain = Path(alfworld.info.ALFRED_PDDL_PATH).read_text()
    grammar = Path(alfworld.info.ALFRED_TWL2_PATH).read_text()
    layouts = Path(alfworld.info.__file__).parent / "gen" / "layouts"
    return domain, grammar, layouts


@cache
def _vocabulary() -> dict[str, Any]:
    import alfworld.gen.constants as constants
    import alfworld.gen.goal_library as goal_library

    receptacle_objects = {
        r: frozenset(o for o in objs if "Sliced" not in o) for r, objs in constants.VAL_RECEPTACLE_OBJECTS.items()
    }
    static_receptacles = set(constants.RECEPTACLES) - set(constants.MOVABLE_RECEPTACLES)
    pickupable = frozenset().union(*receptacle_objects.values()) - static_receptacles
    return {
        "receptacle_objects": receptacle_objects,
        "pickupable": pickupable,
        "openable": frozenset(constants.OPENABLE_CLASS_LIST),
        "actions": {k: frozenset(v) for k, v in constants.VAL_ACTION_OBJECTS.items()},
        "valid_rooms": constants.GOALS_VALID,
        "scene_types": constants.SCENE_TYPE,
        "templates": {t: goal_library.gdict[t]["templates"] for t in TASK_TYPES},
    }


def _receptacle_class(thor_id: str) -> str:
    parts = thor_id.split("|")
    return parts[-1] if parts[-1] in BASINS else parts[0]


@cache
def _load_room(floor_plan: str) -> _Room | None:
    _, _, layouts = _alfworld_files()
    poses_file = layouts / f"{floor_plan}-openable.json"
    objects_file = layouts / f"{floor_plan}-objects.json"
    if not poses_file.exists() or not objects_file.exists():
        return None
    poses = json.loads(poses_file.read_text())
    receptacles, seen_locations = [], set()
    for thor_id, (x, z, rotation, horizon) in sorted(poses.items()):
        # One location per receptacle (AI2-THOR poses are on a 0.25 m grid): "go to X" is then unambiguous.
        location = f"loc|{round(x / 0.25)}|{round(z / 0.25)}|{int(rotation) // 90}|{int(horizon)}"
        while location in seen_locations:
            location += "|1"
        seen_locations.add(location)
        receptacles.append(_Receptacle(thor_id, _receptacle_class(thor_id), location))
    return _Room(floor_plan, tuple(receptacles), frozenset(json.loads(objects_file.read_text())))


def _floor_plans(task_type: str, rooms: str) -> list[str]:
    vocabulary = _vocabulary()
    room_types = sorted(vocabulary["valid_rooms"][task_type])
    plans = [f"FloorPlan{n}" for room in room_types for n in vocabulary["scene_types"][room]]
    if rooms == "all":
        return plans
    return [plan for plan in plans if (plan in UNSEEN_FLOOR_PLANS) == (rooms == "unseen")]


# ---------------------------------------------------------------------------------------------------------------
# Sampling one task in one room.


@dataclass
class _Task:
    room: _Room
    task_type: str
    target: str
    parent: str  # "" for look_at_obj_in_light
    lamp: str  # "" unless look_at_obj_in_light
    receptacles: list[_Receptacle]
    objects: list[_Object]


def _can_hold(receptacle_cls: str, object_cls: str) -> bool:
    return object_cls in _vocabulary()["receptacle_objects"].get(receptacle_cls, ())


def _sample_task(room: _Room, task_type: str, config: GeneratorConfig, rng: random.Random) -> _Task | None:
    """A task in `room`, or None if the room cannot host this task type."""
    vocabulary = _vocabulary()
    room_classes = {r.cls for r in room.receptacles}
    appliance = APPLIANCE.get(task_type)
    if appliance is not None and appliance not in room_classes:
        return None

    lamp = ""
    lamp_holders: list[_Receptacle] = []
    if task_type == "look_at_obj_in_light":
        lamps = [lamp_cls for lamp_cls in LAMPS if lamp_cls in room.object_classes]
        lamp_holders = [r for r in room.receptacles if r.cls in LAMP_HOLDERS]
        if not lamps or not lamp_holders:
            return None
        lamp = rng.choice(lamps)

    candidates = sorted(room.object_classes & vocabulary["pickupable"])
    if task_type in OBJECT_PROPERTY:
        candidates = [c for c in candidates if c in vocabulary["actions"][OBJECT_PROPERTY[task_type]]]
    rng.shuffle(candidates)
    for target in candidates:
        if task_type == "look_at_obj_in_light":
            parents = [""]
        else:
            parents = sorted({r.cls for r in room.receptacles if _can_hold(r.cls, target) and r.cls != appliance})
        # Start places: anywhere that can hold the target, except the goal receptacle (the task would be solved).
        for parent in rng.sample(parents, len(parents)):
            starts = [r for r in room.receptacles if _can_hold(r.cls, target) and r.cls != parent]
            if not starts:
                continue
            task = _Task(room, task_type, target, parent, lamp, [], [])
            _furnish(task, starts, lamp_holders, config, rng)
            return task
    return None


def _furnish(
    task: _Task, starts: list[_Receptacle], lamp_holders: list[_Receptacle], config: GeneratorConfig, rng: random.Random
) -> None:
    """Choose the receptacles kept and place the target(s), the lamp and the distractors."""
    openable = _vocabulary()["openable"]
    room = task.room
    needed: list[_Receptacle] = []
    if task.parent:
        needed.append(rng.choice([r for r in room.receptacles if r.cls == task.parent]))
    if task.task_type in APPLIANCE:
        needed.append(rng.choice([r for r in room.receptacles if r.cls == APPLIANCE[task.task_type]]))
    lamp_holder = rng.choice(lamp_holders) if task.lamp else None
    if lamp_holder is not None:
        needed.append(lamp_holder)

    n_targets = (2 if task.task_type == "pick_two_obj_and_place" else 1) + rng.randint(0, config.extra_targets)
    target_places = []
    for _ in range(n_targets):
        closed = [r for r in starts if r.cls in openable]
        pool = closed if closed and rng.random() < config.closed_target_prob else starts
        target_places.append(rng.choice(pool))
    needed.extend(target_places)

    kept = list(dict.fromkeys(needed))
    others = [r for r in room.receptacles if r not in kept]
    kept += rng.sample(others, max(0, min(len(others), config.max_receptacles - len(kept))))
    task.receptacles = sorted(kept, key=lambda r: r.thor_id)

    used_ids: set[str] = set()
    task.objects = [_Object(_object_id(task.target, used_ids, rng), task.target, place) for place in target_places]
    if lamp_holder is not None:
        task.objects.append(_Object(_object_id(task.lamp, used_ids, rng), task.lamp, lamp_holder))
    vocabulary = _vocabulary()
    distractor_classes = sorted((room.object_classes & vocabulary["pickupable"]) - {task.target})
    for _ in range(config.distractors):
        if not distractor_classes:
            break
        cls = rng.choice(distractor_classes)
        holders = [r for r in task.receptacles if _can_hold(r.cls, cls) and r.cls != task.parent]
        if holders:
            task.objects.append(_Object(_object_id(cls, used_ids, rng), cls, rng.choice(holders)))


def _object_id(cls: str, used: set[str], rng: random.Random) -> str:
    """An AI2-THOR style instance id "Apple|+01.25|+00.90|-02.00" (unique within the game)."""
    while True:
        x, y, z = (rng.uniform(-4.0, 4.0) for _ in range(3))
        thor_id = f"{cls}|{x:+06.2f}|{y:+06.2f}|{z:+06.2f}"
        if thor_id not in used:
            used.add(thor_id)
            return thor_id


# ---------------------------------------------------------------------------------------------------------------
# PDDL problem text.


def mangle(thor_id: str) -> str:
    """AI2-THOR id -> PDDL name, the official games' spelling ("Apple|-01.65" -> "Apple_bar__minus_01_dot_65")."""
    for char, word in (("|", "_bar_"), ("+", "_plus_"), ("-", "_minus_"), (".", "_dot_"), (",", "_comma_")):
        thor_id = thor_id.replace(char, word)
    return thor_id


def _goal(task: _Task) -> str:
    obj, parent = f"{task.target}Type", f"{task.parent}Type"
    if task.task_type == "look_at_obj_in_light":
        return (
            "(and (exists (?t - object ?r - receptacle ?a - agent ?l - location)"
            f" (and (objectType ?t {task.lamp}Type) (toggleable ?t) (isToggled ?t) (inReceptacle ?t ?r)"
            " (receptacleAtLocation ?r ?l) (atLocation ?a ?l)))"
            f" (exists (?o - object ?a - agent) (and (objectType ?o {obj}) (holds ?a ?o))))"
        )
    if task.task_type == "pick_two_obj_and_place":
        return (
            "(exists (?r - receptacle ?o1 - object ?o2 - object)"
            f" (and (receptacleType ?r {parent}) (objectType ?o1 {obj}) (objectType ?o2 {obj}) (not (= ?o1 ?o2))"
            " (inReceptacle ?o1 ?r) (inReceptacle ?o2 ?r)))"
        )
    state = {
        "pick_clean_then_place_in_recep": " (cleanable ?o) (isClean ?o)",
        "pick_heat_then_place_in_recep": " (heatable ?o) (isHot ?o)",
        "pick_cool_then_place_in_recep": " (coolable ?o) (isCool ?o)",
    }.get(task.task_type, "")
    return (
        "(exists (?r - receptacle ?o - object)"
        f" (and (receptacleType ?r {parent}) (objectType ?o {obj}) (inReceptacle ?o ?r){state}))"
    )


def _problem(task: _Task, name: str) -> str:
    vocabulary = _vocabulary()
    actions = vocabulary["actions"]
    start = "loc|start"
    locations = sorted({r.location for r in task.receptacles} | {start})
    rtypes = sorted({r.cls for r in task.receptacles})
    otypes = sorted({o.cls for o in task.objects})
    facts = [f"(atLocation agent1 {mangle(start)})", "(= (total-cost) 0)"]
    for r in task.receptacles:
        rid = mangle(r.thor_id)
        facts += [f"(receptacleType {rid} {r.cls}Type)", f"(receptacleAtLocation {rid} {mangle(r.location)})"]
        if r.cls in vocabulary["openable"]:
            facts.append(f"(openable {rid})")
    for o in task.objects:
        oid = mangle(o.thor_id)
        facts += [
            f"(objectType {oid} {o.cls}Type)",
            f"(inReceptacle {oid} {mangle(o.receptacle.thor_id)})",
            f"(objectAtLocation {oid} {mangle(o.receptacle.location)})",
        ]
        if o.cls in LAMPS:
            facts.append(f"(toggleable {oid})")
            continue
        facts.append(f"(pickupable {oid})")
        for prop, predicate in (("Cleanable", "cleanable"), ("Heatable", "heatable"), ("Coolable", "coolable")):
            if o.cls in actions[prop]:
                facts.append(f"({predicate} {oid})")
    facts += [f"(canContain {rt}Type {ot}Type)" for rt in rtypes for ot in otypes if _can_hold(rt, ot)]

    def block(names: list[str], kind: str) -> str:
        return "\n".join(f"        {n} - {kind}" for n in names)

    objects = "\n".join(
        [
            "        agent1 - agent",
            block([mangle(loc) for loc in locations], "location"),
            block([mangle(r.thor_id) for r in task.receptacles], "receptacle"),
            block([mangle(o.thor_id) for o in task.objects], "object"),
            block([f"{t}Type" for t in rtypes], "rtype"),
            block([f"{t}Type" for t in otypes], "otype"),
        ]
    )
    init = "\n".join(f"        {fact}" for fact in facts)
    return (
        f"(define (problem {name})\n    (:domain alfred)\n    (:objects\n{objects}\n    )\n"
        f"    (:init\n{init}\n    )\n    (:goal {_goal(task)})\n    (:metric minimize (total-cost))\n)\n"
    )


def _description(task: _Task, rng: random.Random) -> str:
    template = rng.choice(_vocabulary()["templates"][task.task_type])
    return template.format(obj=task.target.lower(), recep=task.parent.lower(), toggle=task.lamp.lower(), mrecep="")


def _walkthrough(game_data: dict[str, Any]) -> list[str]:
    """The optimal plan from the start state (Fast Downward via TextWorld); [] if the goal is unreachable."""
    from verl_agent_ext.envs.alfworld.engine import make_engine

    env = make_engine()
    env.load(game_data)
    env.reset()
    pddl = env.unwrapped
    plan = pddl._pddl_state.replan(pddl._entity_infos)
    return [] if pddl._pddl_state.check_goal() else plan


# ---------------------------------------------------------------------------------------------------------------
# Public API.


def generate_game(task_type: str, seed: int, config: GeneratorConfig = GeneratorConfig()) -> dict[str, Any]:
    """The files of one solvable game: {"game": game.tw-pddl dict, "traj_data": traj_data.json dict}.

    Deterministic in (task_type, seed, config). Raises ValueError for an unknown task type.
    """
    if task_type not in TASK_TYPES:
        raise ValueError(f"unknown ALFWorld task type {task_type!r}; valid names: {list(TASK_TYPES)}")
    rng = random.Random(f"{task_type}:{seed}")
    domain, grammar, _ = _alfworld_files()
    floor_plans = _floor_plans(task_type, config.rooms)
    for attempt in range(200):
        room = _load_room(rng.choice(floor_plans))
        task = _sample_task(room, task_type, config, rng) if room is not None else None
        if task is None:
            continue
        name = f"gen_{task_type}_{seed}_{attempt}"
        description = _description(task, rng)
        game = {
            "pddl_domain": domain,
            "grammar": grammar.replace("UNKNOWN GOAL", description),
            "pddl_problem": _problem(task, name),
        }
        walkthrough = _walkthrough(game)
        if not walkthrough:
            continue
        game.update(solvable=True, walkthrough=walkthrough)
        traj_data = {
            "task_type": task_type,
            "task_id": name,
            "pddl_params": {
                "object_target": task.target,
                "parent_target": task.parent,
                "toggle_target": task.lamp,
                "mrecep_target": "",
                "object_sliced": False,
            },
            "scene": {"floor_plan": room.floor_plan, "scene_num": int(room.floor_plan.removeprefix("FloorPlan"))},
            "turk_annotations": {"anns": [{"task_desc": description}]},
            "generator": {"seed": seed, "config": asdict(config)},
        }
        return {"game": game, "traj_data": traj_data}
    raise RuntimeError(f"no solvable {task_type} game found for seed {seed} with {config}")


def write_game(files: dict[str, Any], folder: Path) -> None:
    """Write game.tw-pddl and traj_data.json into `folder` (created)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "game.tw-pddl").write_text(json.dumps(files["game"]))
    (folder / "traj_data.json").write_text(json.dumps(files["traj_data"], indent=1))


def iter_generate(
    out_dir: Path, per_type: int, seed: int = 0, config: GeneratorConfig = GeneratorConfig(), task_types=TASK_TYPES
) -> Iterator[GeneratedGame]:
    """Generate `per_type` games of each task type under `out_dir/<task_type>/<seed>-<index>/`, one at a time."""
    for task_type in task_types:
        for index in range(per_type):
            game_seed = seed * 1_000_003 + index
            files = generate_game(task_type, game_seed, config)
            folder = Path(out_dir) / task_type / f"{seed}-{index:05d}"
            write_game(files, folder)
            yield GeneratedGame(
                path=folder,
                task_type=task_type,
                task_description=files["traj_data"]["turk_annotations"]["anns"][0]["task_desc"],
                walkthrough_length=len(files["game"]["walkthrough"]),
            )


def cache_root() -> Path:
    """Where generated default games live: $VERL_AGENT_EXT_CACHE, else $XDG_CACHE_HOME or ~/.cache."""
    if "VERL_AGENT_EXT_CACHE" in os.environ:
        return Path(os.environ["VERL_AGENT_EXT_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "verl-agent-ext"


def default_games_dir(
    per_type: int = 10,
    seed: int = 0,
    config: GeneratorConfig = GeneratorConfig(),
    progress: Callable[[GeneratedGame], None] | None = None,
) -> Path:
    """A folder of generated games keyed by (per_type, seed, config), generated on first use.

    Generation goes to a temporary folder renamed into place, so concurrent callers never see a partial set.
    """
    key = hashlib.sha256(json.dumps([per_type, seed, asdict(config)]).encode()).hexdigest()[:12]
    target = cache_root() / "alfworld" / f"games-{per_type}x{seed}-{key}"
    if (target / "COMPLETE").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=target.parent))
    try:
        for game in iter_generate(staging, per_type, seed, config):
            if progress is not None:
                progress(game)
        (staging / "COMPLETE").write_text("ok\n")
        try:
            staging.rename(target)
        except OSError:
            if not (target / "COMPLETE").exists():  # not a concurrent winner: a real failure
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
