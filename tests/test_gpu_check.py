"""bench/gpu_check.sh --dry-run lists its commands, and every one of them composes here (on CPU)."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

from tests.helpers.run_helpers import REPO_ROOT, script_env

SCRIPT = REPO_ROOT / "bench" / "gpu_check.sh"


def test_dry_run_lists_commands_that_compose(tmp_path: Path) -> None:
    out = subprocess.run(
        ["bash", str(SCRIPT), "--dry-run", str(tmp_path)], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    commands = [shlex.split(line) for line in out.splitlines() if line.strip()]
    scripts = [next(part for part in command if part.endswith(".py")) for command in commands]
    assert scripts == [
        "train.py",
        "bench/gpu_resnet50_step.py",
        "bench/gpu_resnet50_step.py",
        "train.py",
        "train.py",
    ]
    joined = [" ".join(command) for command in commands]
    assert "trainer=gpu" in joined[0] and "experiment=cifar10_fast" in joined[0]
    assert "model.compile=true" in joined[3] and "--compile" in joined[2]
    assert "experiment=finetune_cifar10" in joined[4] and not any(str(tmp_path) not in line for line in joined)
    assert not list(tmp_path.iterdir())  # a dry run writes nothing
    for command, script in zip(commands, scripts, strict=True):
        arguments = command[command.index(script) + 1 :]
        if script == "train.py":  # Hydra composes and prints the job's config, builds nothing
            check = [sys.executable, str(REPO_ROOT / "train.py"), *arguments, "--cfg", "job"]
        else:
            check = [sys.executable, str(REPO_ROOT / script), "--help"]
        proc = subprocess.run(check, cwd=REPO_ROOT, env=script_env(), capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, f"{' '.join(check)}:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        if script == "train.py":
            assert "_target_" in proc.stdout
