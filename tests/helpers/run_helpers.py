"""Run train.py / eval.py as a user would (a subprocess), for end-to-end tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
TINY_MODEL = ["model=small_cnn", "model.backbone.width=8", "dataset.num_workers=0", "dataset.batch_size=32"]


def script_env() -> dict[str, str]:
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "NO_ALBUMENTATIONS_UPDATE": "1"}
    # the script starts its own processes: no account, and no DDP placement inherited from a launcher
    for name in ("WANDB_API_KEY", "MASTER_PORT", "LOCAL_RANK", "WORLD_SIZE", "NODE_RANK"):
        env.pop(name, None)
    return env


def start_script(script: str, *overrides: str, **popen: object) -> subprocess.Popen:
    """The script as a running subprocess (e.g. to kill it mid-run)."""
    return subprocess.Popen(
        [sys.executable, str(REPO_ROOT / script), *overrides], cwd=REPO_ROOT, env=script_env(), **popen
    )


def run_script(
    script: str,
    *overrides: str,
    timeout: int = 300,
    check: bool = True,
    wrapper: tuple[str, ...] = (),
    cwd: Path | None = None,
) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [*wrapper, sys.executable, str(REPO_ROOT / script), *overrides],
        cwd=cwd or REPO_ROOT,
        env=script_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{script} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


# Runs its arguments as its only child and reports that child's peak RSS (with every descendant it
# waited for: loader and pool workers): a fresh process, so no earlier test's child counts. The child
# dies with it (Linux parent-death signal), so a timed-out test leaves no run behind.
_PEAK_RSS = (
    "import ctypes, resource, signal, subprocess, sys\n"
    "def die_with_parent():\n"
    "    ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0)\n"
    "code = subprocess.call(sys.argv[1:], preexec_fn=die_with_parent if sys.platform == 'linux' else None)\n"
    "print(f'peak_rss_kb={resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}', file=sys.stderr)\n"
    "sys.exit(code)\n"
)


def run_script_peak_rss(script: str, *overrides: str, timeout: int = 300) -> tuple[subprocess.CompletedProcess, int]:
    """:func:`run_script` (checked), and the peak resident memory in bytes of its largest process."""
    proc = run_script(script, *overrides, timeout=timeout, wrapper=(sys.executable, "-c", _PEAK_RSS))
    peak_kb = int(proc.stderr.rsplit("peak_rss_kb=", 1)[1].split()[0])
    return proc, peak_kb * 1024


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
