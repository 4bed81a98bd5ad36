"""Run train.py / eval.py as a user would (a subprocess), for end-to-end tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY_MODEL = ["model=small_cnn", "model.backbone.width=8", "dataset.num_workers=0", "dataset.batch_size=32"]


def run_script(
    script: str, *overrides: str, timeout: int = 300, check: bool = True, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "NO_ALBUMENTATIONS_UPDATE": "1"}
    # the script starts its own processes: no account, and no DDP placement inherited from a launcher
    for name in ("WANDB_API_KEY", "MASTER_PORT", "LOCAL_RANK", "WORLD_SIZE", "NODE_RANK"):
        env.pop(name, None)
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / script), *overrides],
        cwd=cwd or REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{script} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def read_metrics(run_dir: Path) -> dict:
    return json.loads((Path(run_dir) / "metrics.json").read_text())


def run_ddp_sim(run_dir: Path, *overrides: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """``train.py trainer=ddp_sim`` into ``run_dir``, checked to have really started 2 processes
    (not a silent single-process fallback): rank 1's log file and Lightning's own message."""
    proc = run_script("train.py", "trainer=ddp_sim", f"hydra.run.dir={run_dir}", *overrides, timeout=timeout)
    out = proc.stdout + proc.stderr
    assert "Starting with 2 processes" in out, out[-3000:]
    assert (Path(run_dir) / "train_ddp_process_1.log").exists()
    return proc
