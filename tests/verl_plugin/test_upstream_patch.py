"""upstream/: the verl patch applies to the installed verl, and its own CPU test passes on the patched copy."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PATCH = ROOT / "upstream" / "0001-algo-pass-non_tensor_batch-to-advantage-estimators.patch"
PATCHED_FILES = ("trainer/ppo/ray_trainer.py", "trainer/ppo/v1/trainer_base.py")


def test_patch_applies_to_the_installed_verl(tmp_path):
    import verl

    installed = Path(verl.__file__).parent
    for relative in PATCHED_FILES:
        (tmp_path / "verl" / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(installed / relative, tmp_path / "verl" / relative)
    subprocess.run(["git", "apply", str(PATCH)], cwd=tmp_path, check=True, capture_output=True)
    patched = (tmp_path / "verl" / "trainer" / "ppo" / "ray_trainer.py").read_text()
    assert '"non_tensor_batch" in estimator_params' in patched
    assert (tmp_path / "tests" / "trainer" / "ppo" / "test_adv_estimator_non_tensor_batch_on_cpu.py").is_file()


def test_patch_own_test_passes_on_a_patched_copy_of_verl(tmp_path):
    """Copy the installed verl, apply the patch, run the test the patch adds against that copy (our plugin off, so
    nothing but the patch feeds non_tensor_batch to the estimators)."""
    import verl

    shutil.copytree(Path(verl.__file__).parent, tmp_path / "verl", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(["git", "apply", str(PATCH)], cwd=tmp_path, check=True, capture_output=True)
    test = tmp_path / "tests" / "trainer" / "ppo" / "test_adv_estimator_non_tensor_batch_on_cpu.py"
    code = "import verl, sys; sys.exit(0 if verl.__file__.startswith(sys.argv[1]) else 3)"
    env = {**os.environ, "VERL_USE_EXTERNAL_PLUGINS": "none"}
    # cwd = the copy: `python -m`/`-c` put it first on sys.path, so the patched verl is the one imported
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=tmp_path, env=env, check=True)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path), str(test)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert " passed" in result.stdout and "failed" not in result.stdout


def test_cpu_backend_patch_applies_to_the_installed_verl(tmp_path):
    import verl

    relative = Path("utils") / "distributed.py"
    (tmp_path / "verl" / relative).parent.mkdir(parents=True)
    shutil.copy(Path(verl.__file__).parent / relative, tmp_path / "verl" / relative)
    patch = ROOT / "upstream" / "0002-utils-process-group-backend-on-cpu.patch"
    subprocess.run(["git", "apply", str(patch)], cwd=tmp_path, check=True, capture_output=True)
    assert "def default_process_group_backend" in (tmp_path / "verl" / relative).read_text()
