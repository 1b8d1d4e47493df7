"""upstream/: the verl patch still applies to the installed verl (its own CPU test is part of the patch; see
upstream/README.md for running it on a patched checkout)."""

from __future__ import annotations

import shutil
import subprocess
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


def test_cpu_backend_patch_applies_to_the_installed_verl(tmp_path):
    import verl

    relative = Path("utils") / "distributed.py"
    (tmp_path / "verl" / relative).parent.mkdir(parents=True)
    shutil.copy(Path(verl.__file__).parent / relative, tmp_path / "verl" / relative)
    patch = ROOT / "upstream" / "0002-utils-process-group-backend-on-cpu.patch"
    subprocess.run(["git", "apply", str(patch)], cwd=tmp_path, check=True, capture_output=True)
    assert "def default_process_group_backend" in (tmp_path / "verl" / relative).read_text()
