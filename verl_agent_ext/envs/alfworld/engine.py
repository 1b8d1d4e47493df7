"""The ALFWorld game engine: TextWorld's PDDL environment with ALFWorld's name demangler, made fast enough.

Two pure functions dominate TextWorld's reset and step time, and `make_engine` memoises both once per process
(and makes the grammar's context copies shallow, see `_shallow_copy_grammar_contexts`):

- the grammar: every observation and admissible command is rendered through TextWorld's text grammar, which
  re-parses each template string and each rule condition with a PEG parser (tatsu) on every use. Template parses
  are cached by string and deep-copied before use, because TextWorld mutates the symbols it derives; condition
  parses (`Rule.parse_conjunctive_query`) are only read, so the cached rule is shared.
- the PDDL translation: every `reset` translates the game's PDDL to Fast Downward's SAS format twice (about 0.2 s
  each). Translations are cached by (domain, problem) text, so resetting or replaying a game seen before is cheap.
  TextWorld only reads the translated task.

Each engine needs its own copy of Fast Downward's shared library (the library keeps the game in globals). Closing
an environment never unloads its copy (`dlclose` of it crashed later loads in the same process): `release_engine`
resets it and keeps it for the next `make_engine`, so a process holds at most as many copies as it ever had
environments open at once.

Behaviour is unchanged (tests compare observations and admissible actions across replays and with the planner's
walkthrough). Fast Downward's translator keeps global state (options, captured stdout), so one process must not
run two engines at the same time from different threads: the env pool steps each process's envs one at a time.
"""

from __future__ import annotations

import copy
import functools
import re
import sys
import threading
import weakref
from typing import Any

_PATCHED = False
_FREE_LIBRARIES: list[Any] = []
_FREE_LIBRARIES_LOCK = threading.Lock()
textworld_copy_context: Any = None  # TextWorld's own (deep-copying) function, kept for the equality test


def _patch_once() -> None:
    global _PATCHED
    if not _PATCHED:
        _memoise_grammar_parser()
        _shallow_copy_grammar_contexts()
        _memoise_command_texts()
        _memoise_pddl_translation()
        _reuse_downward_libraries()
        _PATCHED = True


def _reuse_downward_libraries() -> None:
    import fast_downward

    load = fast_downward.load_lib

    def load_lib() -> Any:
        with _FREE_LIBRARIES_LOCK:
            if _FREE_LIBRARIES:
                return _FREE_LIBRARIES.pop()
        return load()

    fast_downward.load_lib = load_lib


def release_engine(engine: Any) -> None:
    """Reset the engine's Fast Downward library and keep it for the next `make_engine` (never unloaded)."""
    library = engine.unwrapped.downward_lib
    library.cleanup()
    with _FREE_LIBRARIES_LOCK:
        _FREE_LIBRARIES.append(library)


def _memoise_grammar_parser() -> None:
    from textworld.envs.pddl import textgen

    parse = textgen._parse_and_convert

    @functools.lru_cache(maxsize=4096)
    def parse_cached(text: str, rule_name: str, trace: bool) -> Any:
        return parse(text, rule_name=rule_name, trace=trace)

    def parse_and_convert(text: str, rule_name: str = "symbols", trace: bool = False, **kwargs: Any) -> Any:
        if kwargs or not isinstance(text, str):
            return parse(text, rule_name=rule_name, trace=trace, **kwargs)
        return copy.deepcopy(parse_cached(text, rule_name, bool(trace)))

    textgen._parse_and_convert = parse_and_convert

    from textworld.logic import Rule

    parse_query = Rule.parse_conjunctive_query

    @functools.lru_cache(maxsize=4096)
    def parse_query_cached(cls: type, expression: str) -> Any:
        return parse_query(expression)

    Rule.parse_conjunctive_query = classmethod(parse_query_cached)


def _copy_context(context: dict[str, Any]) -> dict[str, Any]:
    """TextWorld's `copy_context` with shallow copies of `variables` and `mapping` (see `_shallow_copy_...`)."""
    return {
        "state": context["state"],
        "facts": context["facts"],
        "variables": dict(context["variables"]),
        "mapping": dict(context["mapping"]),
        "entity_infos": context["entity_infos"],
    }


def _shallow_copy_grammar_contexts() -> None:
    """Copy grammar contexts shallowly: the text is the same, each engine step about 4x faster.

    TextWorld deep-copies a derivation context's `variables` (name -> EntityInfo) and `mapping` (Placeholder ->
    Variable) for every symbol it expands, which is most of a step's time. Derivation only adds keys to those
    dicts; the values are only read (the grammar's expressions are attribute reads such as `{r.name}`), so a new
    dict holding the same values is equivalent (tests/envs/alfworld/test_alfworld_cached.py compares both).
    """
    global textworld_copy_context
    from textworld.envs.pddl import textgen

    textworld_copy_context = textgen.copy_context
    textgen.copy_context = _copy_context


_LIST_RULES = ("list_empty", "list_separator", "list_last_separator")
_BRACES = re.compile(r"\{([^{}]*)\}")
_ATTRIBUTE_READS = re.compile(r"\s*[A-Za-z_]\w*(\.\w+)*(\s+or\s+[A-Za-z_]\w*(\.\w+)*)*\s*")
_PREDICATE = re.compile(r"([A-Za-z_][\w-]*)\s*\(")
_COMMAND_MEMOS: weakref.WeakKeyDictionary[Any, _CommandMemo] = weakref.WeakKeyDictionary()
textworld_derive: Any = None  # TextWorld's own grammar derivation, kept for the equality test


class _CommandMemo:
    """The command texts of one loaded game's grammar, for templates whose text cannot change with the state.

    A template qualifies when it has no nonterminal (`#...#`, whose rules may test the state), its `{...}`
    expressions only read attributes of bound variables (`{r.name}`, `{r.name or r.id}`), and its conditions
    (`{x | pred(...)}`) only test static predicates: no action of the game's PDDL domain has them in its effects (nor
    is any an axiom). Then the derived text is a function of the action's variable bindings, the key here.
    """

    def __init__(self, dynamic_predicates: set[str], unconditional_lists: bool) -> None:
        self.dynamic = dynamic_predicates
        self.unconditional_lists = unconditional_lists
        self.qualifies: dict[str, bool] = {}
        self.texts: dict[tuple[str, frozenset], str] = {}

    def check(self, template: str) -> bool:
        if "#" in template or _BRACES.sub("", template).count("{") or _BRACES.sub("", template).count("}"):
            return False
        if "[" in template and not self.unconditional_lists:
            return False
        for body in _BRACES.findall(template):
            expression, _, condition = body.partition("|")
            if not _ATTRIBUTE_READS.fullmatch(expression):
                return False
            if any(name.lower() in self.dynamic for name in _PREDICATE.findall(condition)):
                return False
        return True


def _memoise_command_texts() -> None:
    """Derive each admissible command's text once per game (bindings -> text), where it provably cannot change.

    Every step TextWorld re-derives the text of every applicable action through the grammar (half of a step's
    time); `_CommandMemo` says which templates are a pure function of their bindings.
    """
    global textworld_derive
    from textworld.envs.pddl import PddlEnv, textgen

    load = PddlEnv.load

    def load_and_register(self: Any, *args: Any, **kwargs: Any) -> None:
        load(self, *args, **kwargs)
        task = self._pddl_state.task
        dynamic = {effect.literal.predicate.lower() for action in task.actions for effect in action.effects}
        dynamic |= {axiom.name.lower() for axiom in task.axioms}
        rules = self._logic.grammar._rules
        unconditional = all(not rule.condition for name in _LIST_RULES for rule in rules.get(name, []))
        _COMMAND_MEMOS[self._logic.grammar] = _CommandMemo(dynamic, unconditional)

    PddlEnv.load = load_and_register
    textworld_derive = derive = textgen.ContextSensitiveGrammar.derive

    def derive_memoised(self: Any, start: str, context: dict[str, Any] = {}) -> str:  # noqa: B006 - TextWorld's
        memo = _COMMAND_MEMOS.get(self)
        if memo is None or "mapping" not in context:
            return derive(self, start, context)
        qualifies = memo.qualifies.get(start)
        if qualifies is None:
            qualifies = memo.qualifies[start] = memo.check(start)
        if not qualifies:
            return derive(self, start, context)
        key = (start, frozenset(context["mapping"].items()))
        text = memo.texts.get(key)
        if text is None:
            text = memo.texts[key] = derive(self, start, context)
        return text

    textgen.ContextSensitiveGrammar.derive = derive_memoised


def _memoise_pddl_translation() -> None:
    import fast_downward

    translate = fast_downward.pddl2sas

    @functools.lru_cache(maxsize=256)
    def pddl2sas(domain: str, problem: str, verbose: bool = False, optimize: bool = False) -> Any:
        argv = sys.argv  # the translator rebinds sys.argv for its option parser: put the caller's back
        try:
            return translate(domain, problem, verbose=verbose, optimize=optimize)
        finally:
            sys.argv = argv

    fast_downward.pddl2sas = pddl2sas


INSTALL_HINT = "ALFWorld support needs the alfworld extra: pip install 'verl-agent-ext[alfworld]'"


def require_alfworld() -> None:
    """Raise a clear ImportError when the optional `alfworld` package (and TextWorld) is missing."""
    try:
        import alfworld  # noqa: F401
        import textworld  # noqa: F401
    except ModuleNotFoundError as error:
        raise ImportError(f"{INSTALL_HINT} ({error})") from error


def make_engine() -> Any:
    """A TextWorld `PddlEnv` (own Fast Downward library copy) wrapped in ALFWorld's `AlfredDemangler`.

    The engine's states carry the feedback text, `won` and `admissible_commands`.
    """
    require_alfworld()
    import textworld
    from alfworld.agents.environment.alfred_tw_env import AlfredDemangler
    from textworld.envs.pddl import PddlEnv

    _patch_once()
    return AlfredDemangler()(PddlEnv(textworld.EnvInfos(admissible_commands=True, won=True)))
