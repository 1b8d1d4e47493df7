"""ALFWorld paraphrase stress: each trajectory's texts rewritten in one of several styles, labels unchanged.

ALFWorld's observations and actions come from a handful of templates, so a step of a success recurs verbatim in a
failure and exact string matching finds it. Text from people or language models varies in wording and order. This
rewriter keeps every step's meaning (the same objects, receptacles and numbers, the same state and action) and
changes its words: each trajectory is rendered in one style, drawn per trajectory from `seed`, so two trajectories
of a group share their wording only when they drew the same style (1 in `len(STYLES)` pairs).

Styles (observation / action examples for "You arrive at fridge 1. The fridge 1 is closed." / "take apple 1 from
countertop 2"):

- `template`: ALFWorld's own text, unchanged;
- `terse`: "At fridge 1. fridge 1: closed." / "grab apple 1 off countertop 2";
- `verbose`: "You walk over to the fridge 1. The fridge 1 is shut." / "pick up the apple 1 from the countertop 2";
- `casual`: "ok, now at fridge 1. it's closed, the fridge 1." / "get apple 1 (it's on countertop 2)".

Lists of things seen ("a mug 1, a apple 2, and a knife 1") are re-joined per style, and in the `casual` style
also reordered (seeded by trajectory and text), as a writer who does not list things in the engine's order would.
Anything no rule covers (the `help` text) keeps the template's wording.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable

import numpy as np

STYLES = ("template", "terse", "verbose", "casual")
TEXT_COLUMNS = ("anchor_obs", "next_anchor_obs", "action_text")

_THING = r"[a-z]+ \d+"
_LIST = re.compile(rf"(?:a |an )?{_THING}(?:, (?:and )?(?:a |an )?{_THING})*")

# Actions: (regex on the whole action, replacement per style after "template")
_ACTIONS: tuple[tuple[str, tuple[str, str, str]], ...] = (
    (rf"go to ({_THING})", (r"go \1", r"walk over to the \1", r"head to \1")),
    (rf"take ({_THING}) from ({_THING})", (r"grab \1 off \2", r"pick up the \1 from the \2", r"get \1 (it's on \2)")),
    (rf"move ({_THING}) to ({_THING})", (r"put \1 on \2", r"place the \1 in or on the \2", r"drop \1 at \2")),
    (rf"put ({_THING}) in/on ({_THING})", (r"put \1 on \2", r"place the \1 in or on the \2", r"drop \1 at \2")),
    (rf"open ({_THING})", (r"open \1", r"pull open the \1", r"let's open \1")),
    (rf"close ({_THING})", (r"shut \1", r"push the \1 closed", r"close \1 again")),
    (rf"examine ({_THING})", (r"inspect \1", r"take a close look at the \1", r"check out \1")),
    (rf"use ({_THING})", (r"switch on \1", r"turn on the \1", r"flip \1 on")),
    (rf"heat ({_THING}) with ({_THING})", (r"heat \1 in \2", r"warm up the \1 using the \2", r"nuke \1 in \2")),
    (
        rf"cool ({_THING}) with ({_THING})",
        (r"chill \1 in \2", r"cool down the \1 using the \2", r"put \1 in \2 to chill"),
    ),
    (rf"clean ({_THING}) with ({_THING})", (r"wash \1 in \2", r"rinse the \1 clean using the \2", r"scrub \1 at \2")),
    (
        rf"slice ({_THING}) with ({_THING})",
        (r"cut \1 with \2", r"carefully slice the \1 with the \2", r"chop \1 using \2"),
    ),
    ("look", ("look", "look around the room", "where am i")),
    ("inventory", ("inv", "check what you are carrying", "what do i have")),
    ("help", ("commands", "show the list of commands", "help me")),
)
_ACTION_RULES = [(re.compile(rf"^{pattern}$"), outputs) for pattern, outputs in _ACTIONS]

# Observation sentences: regex (may contain a LIST group) and one replacement per style after "template".
_SENTENCES: tuple[tuple[str, tuple[str, str, str]], ...] = (
    (
        r"You are in the middle of a room\. Looking quickly around you, you see (?P<items>LIST|nothing)\.",
        (
            r"Room. Around: \1.",
            r"You stand in the centre of a room. Glancing around, you notice \1.",
            r"ok so i'm in a room, i can see \1.",
        ),
    ),
    (rf"You arrive at ({_THING})\.", (r"At \1.", r"You walk over to the \1.", r"ok, now at \1.")),
    (rf"The ({_THING}) is closed\.", (r"\1: closed.", r"The \1 is shut.", r"it's closed, the \1.")),
    (rf"The ({_THING}) is open\.", (r"\1: open.", r"The \1 stands open.", r"the \1 is open.")),
    (
        rf"On the ({_THING}), you see (?P<items>LIST|nothing)\.",
        (r"\1 has \2.", r"Looking at the \1, you notice \2.", r"on \1 there's \2."),
    ),
    (
        r"In it, you see (?P<items>LIST|nothing)\.",
        (r"Inside: \1.", r"Inside it, you notice \1.", r"inside there's \1."),
    ),
    (rf"You open the ({_THING})\.", (r"Opened \1.", r"You pull open the \1.", r"opened \1.")),
    (rf"You close the ({_THING})\.", (r"Closed \1.", r"You push the \1 closed.", r"closed \1.")),
    (
        rf"You pick up the ({_THING}) from the ({_THING})\.",
        (r"Got \1 off \2.", r"You lift the \1 from the \2.", r"got \1, took it from \2."),
    ),
    (
        rf"You (?:move|put) the ({_THING}) (?:to|in|on|in/on) the ({_THING})\.",
        (r"\1 now on \2.", r"You set the \1 down in or on the \2.", r"put \1 on \2."),
    ),
    (
        rf"You heat the ({_THING}) using the ({_THING})\.",
        (r"Heated \1 in \2.", r"You warm up the \1 using the \2.", r"\1 is hot now (\2)."),
    ),
    (
        rf"You cool the ({_THING}) using the ({_THING})\.",
        (r"Cooled \1 in \2.", r"You cool down the \1 using the \2.", r"\1 is cold now (\2)."),
    ),
    (
        rf"You clean the ({_THING}) using the ({_THING})\.",
        (r"Cleaned \1 in \2.", r"You rinse the \1 clean using the \2.", r"\1 is clean now (\2)."),
    ),
    (
        rf"You are facing the ({_THING})\. Next to it, you see (?P<items>LIST|nothing)\.",
        (
            r"Facing \1. Beside: \2.",
            r"You stand in front of the \1. Beside it, you notice \2.",
            r"i'm at \1, next to it there's \2.",
        ),
    ),
    (r"You are carrying: (?P<items>LIST)\.", (r"Holding: \1.", r"In your hands you hold \1.", r"i have \1.")),
    (
        r"You are not carrying anything\.",
        (r"Holding: nothing.", r"Your hands are empty.", r"i'm not holding anything."),
    ),
    (r"Nothing happens\.", (r"No effect.", r"Nothing seems to happen.", r"hm, nothing happened.")),
    (r"Available commands:", (r"Commands:", r"These are the commands you can use:", r"stuff i can do:")),
)
_SENTENCE_RULES = [(re.compile(pattern.replace("LIST", _LIST.pattern)), outputs) for pattern, outputs in _SENTENCES]
_NOTHING = ("nothing", "nothing at all", "nothing")
_ITEM = re.compile(_THING)


def style_of(traj_uid: str, seed: int) -> int:
    """The style index of a trajectory: a seeded hash, independent of row order and of other trajectories."""
    digest = hashlib.sha256(f"{seed}|{traj_uid}".encode()).digest()
    return digest[0] % len(STYLES)


def _join_list(text: str, style: int, rng: random.Random) -> str:
    """A list of things ("a mug 1, and a knife 2") re-joined in `style` (1-based past template)."""
    if text == "nothing":
        return _NOTHING[style - 1]
    items = _ITEM.findall(text)
    if style == 1:
        return ", ".join(items)
    if style == 2:
        return ", ".join(f"a {item}" for item in items[:-1]) + (" and " if len(items) > 1 else "") + f"a {items[-1]}"
    rng.shuffle(items)
    return " + ".join(items)


def rewrite_observation(text: str, style: int, rng: random.Random) -> str:
    """`text` (an ALFWorld observation) in style `style` (index into STYLES); style 0 returns it unchanged."""
    if style == 0:
        return text
    for pattern, outputs in _SENTENCE_RULES:

        def replace(match: re.Match, outputs=outputs) -> str:
            groups = list(match.groups())
            if "items" in match.re.groupindex:
                index = match.re.groupindex["items"] - 1
                groups[index] = _join_list(groups[index], style, rng)
            return _expand(outputs[style - 1], groups)

        text = pattern.sub(replace, text)
    return text


def _expand(template: str, groups: list[str]) -> str:
    return re.sub(r"\\(\d)", lambda m: groups[int(m.group(1)) - 1], template)


def rewrite_action(text: str, style: int) -> str:
    """`text` (an ALFWorld action) in style `style`; actions no rule covers are returned unchanged."""
    if style == 0:
        return text
    for pattern, outputs in _ACTION_RULES:
        match = pattern.match(text)
        if match:
            return _expand(outputs[style - 1], list(match.groups()))
    return text


def paraphrase_rows(columns: dict[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
    """Labelled rows with `anchor_obs`, `next_anchor_obs` and `action_text` rewritten per trajectory's style.

    Adds the column `paraphrase_style` (the style's name). Labels and every other column are unchanged.
    """
    out = dict(columns)
    styles = np.asarray([style_of(str(traj), seed) for traj in columns["traj_uid"]])
    for name in TEXT_COLUMNS:
        rewrite: Callable[[str, int, int], str] = (
            (lambda text, style, row: rewrite_action(text, style))
            if name == "action_text"
            else (lambda text, style, row: rewrite_observation(text, style, _text_rng(seed, columns, row, text)))
        )
        column = np.empty(len(styles), dtype=object)
        column[:] = [
            rewrite(str(text), int(style), row)
            for row, (text, style) in enumerate(zip(columns[name], styles, strict=True))
        ]
        out[name] = column
    names = np.empty(len(styles), dtype=object)
    names[:] = [STYLES[style] for style in styles]
    out["paraphrase_style"] = names
    return out


def _text_rng(seed: int, columns: dict[str, np.ndarray], row: int, text: str) -> random.Random:
    """Order of listed things: fixed per (seed, trajectory, text), so a state renders alike within a trajectory."""
    key = f"{seed}|{columns['traj_uid'][row]}|{text}".encode()
    return random.Random(int.from_bytes(hashlib.sha256(key).digest()[:8], "little"))
