"""Run train.py / eval.py as a user would (a subprocess), for end-to-end tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY_MODEL = ["model=small_cnn", "model.backbone.width=8", "dataset.num_workers=0", "dataset.batch_size=32"]


def run_script(script: str, *overrides: str, timeout: int = 300, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "NO_ALBUMENTATIONS_UPDATE": "1"}
    env.pop("WANDB_API_KEY", None)
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / script), *overrides],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{script} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def read_metrics(run_dir: Path) -> dict:
    return json.loads((Path(run_dir) / "metrics.json").read_text())
