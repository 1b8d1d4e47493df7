"""Mutation check: apply named bugs to the core paths, one at a time, and assert the test suite catches each.

    python scripts/mutants.py            # every mutant (about 10-20 min on 2 cores)
    python scripts/mutants.py --list     # names only
    python scripts/mutants.py --only checkpoint-restores-nothing
    python scripts/mutants.py --control  # also check each mutant's tests pass without it

Each mutant replaces one exact piece of source text in a throw-away copy of the package and runs the tests that
claim to check that path (with the copy first on PYTHONPATH). A mutant is *caught* when those tests fail. The script
exits 1 if a mutant survives, or if its source text is gone (the code moved: update the mutant with it).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str  # file under the repository root
    original: str  # exact source text, present once
    mutated: str
    tests: tuple[str, ...]  # pytest node ids that must catch it


MUTANTS = (
    Mutant(
        "scpo-credit-not-added",
        "verl_agent_ext/credit/scpo.py",
        "shaped = step_returns + config.alpha * unit * credit",
        "shaped = step_returns + 0.0 * credit",
        ("tests/credit/test_credit_scpo.py",),
    ),
    Mutant(
        "gigpo-step-channel-dropped",
        "verl_agent_ext/credit/gigpo.py",
        "advantage=episode_adv + config.step_advantage_w * step_adv,",
        "advantage=episode_adv + 0.0 * step_adv,",
        ("tests/credit/test_gigpo_parity.py",),
    ),
    Mutant(
        "startup-check-removed",
        "verl_agent_ext/verl_plugin/step_metadata.py",
        "        check_config(config)  # first: our reason is the precise one when the run cannot work\n",
        "",
        ("tests/verl_plugin/test_startup_check_on_cpu.py",),
    ),
    Mutant(
        "credit-never-reaches-the-update",
        "verl_agent_ext/local/trainer.py",
        "record.update(self.update(rows, advantages, old_log_probs))",
        "record.update(self.update(rows, advantages * 0, old_log_probs))",
        ("tests/local/test_trainer_tiny_run.py::test_credit_reaches_the_update_inside_the_training_loop",),
    ),
    Mutant(
        "checkpoint-restores-nothing",
        "verl_agent_ext/local/checkpoint.py",
        "            parameters[name].copy_(tensor.to(parameters[name].device))",
        "            pass",
        ("tests/local/test_checkpoint.py",),
    ),
    Mutant(
        "checkpoint-skips-rng",
        "verl_agent_ext/local/checkpoint.py",
        '    torch.set_rng_state(state["rng"]["torch"])\n',
        "",
        ("tests/local/test_checkpoint.py",),
    ),
    Mutant(
        "checkpoint-skips-optimizer",
        "verl_agent_ext/local/checkpoint.py",
        '    optimizer.load_state_dict(state["optimizer"])\n',
        "",
        ("tests/local/test_checkpoint.py",),
    ),
)


def run_mutant(mutant: Mutant, python: str, apply: bool = True) -> tuple[str, float]:
    """('caught' | 'SURVIVED' | 'STALE', seconds) for one mutant, run in a temporary copy of the package.
    With apply=False the copy stays unmutated (a control run: its tests must pass, i.e. 'SURVIVED')."""
    source = (ROOT / mutant.path).read_text()
    if source.count(mutant.original) != 1:
        return "STALE", 0.0
    with tempfile.TemporaryDirectory(prefix=f"mutant-{mutant.name}-") as tmp:
        shutil.copytree(ROOT / "verl_agent_ext", Path(tmp) / "verl_agent_ext")
        if apply:
            (Path(tmp) / mutant.path).write_text(source.replace(mutant.original, mutant.mutated))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([tmp, os.environ.get("PYTHONPATH", "")])}
        started = time.perf_counter()
        tests = [str(ROOT / test) for test in mutant.tests]
        result = subprocess.run(
            # cwd = the copy: `python -m` puts the working directory first on sys.path, ahead of PYTHONPATH
            [python, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "--rootdir", str(ROOT), *tests],
            cwd=tmp,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return ("caught" if result.returncode != 0 else "SURVIVED"), time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", default=None, help="mutant names (default: all)")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument(
        "--control", action="store_true", help="first run each mutant's tests unmutated: they must pass"
    )
    args = parser.parse_args()
    if args.list:
        for mutant in MUTANTS:
            print(f"{mutant.name:<36} {mutant.path}")
        return 0
    unknown = sorted(set(args.only or ()) - {mutant.name for mutant in MUTANTS})
    if unknown:
        print(f"error: unknown mutants {unknown}; valid names: {[m.name for m in MUTANTS]}", file=sys.stderr)
        return 2
    selected = [mutant for mutant in MUTANTS if args.only is None or mutant.name in args.only]
    print(f"{'mutant':<36} {'result':<9} {'seconds':>8}")
    outcomes = []
    for mutant in selected:
        if args.control and run_mutant(mutant, sys.executable, apply=False)[0] != "SURVIVED":
            print(f"{mutant.name:<36} {'CONTROL FAILED (the tests fail without the mutant)'}")
            return 1
        outcome, seconds = run_mutant(mutant, sys.executable)
        outcomes.append(outcome)
        print(f"{mutant.name:<36} {outcome:<9} {seconds:>8.1f}", flush=True)
    caught = outcomes.count("caught")
    print(f"{caught}/{len(outcomes)} mutants caught")
    return 0 if caught == len(outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
