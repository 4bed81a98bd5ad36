"""One run per run dir: a second run on a dir in use is refused in one line before it writes there.

The lock is ``<run dir>/run.lock`` (utils/run_dir_lock.py), taken by a Hydra callback before Hydra
writes ``.hydra/`` and the log file (launch/run_dir_lock.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from litvision.utils.errors import ConfigError
from litvision.utils.run_dir_lock import LOCK_NAME, RunDirLock, _process_start, is_launching_process
from tests.helpers.run_helpers import REPO_ROOT, TINY_MODEL, run_ddp_sim, run_script
from tests.test_user_errors import assert_one_error_line


@contextlib.contextmanager
def held_by_another_process(run_dir: Path) -> Iterator[subprocess.Popen]:
    """A separate process holding ``run_dir``'s lock until the block ends."""
    code = (
        "import sys; from litvision.utils.run_dir_lock import RunDirLock\n"
        f"lock = RunDirLock({str(run_dir)!r}); lock.acquire(); print('held', flush=True); sys.stdin.read()"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        yield proc
    finally:
        if proc.poll() is None:
            proc.stdin.close()
            proc.wait(timeout=30)


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def write_lock(run_dir: Path, **record: object) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_NAME
    path.write_text(json.dumps({"host": socket.gethostname(), "started": "2024-01-01 00:00:00", **record}))
    return path


def snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


# ---- the lock itself -------------------------------------------------------------------------
def test_a_held_run_dir_is_refused_naming_the_holder(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with held_by_another_process(run_dir) as holder:
        with pytest.raises(ConfigError) as refused:
            RunDirLock(run_dir).acquire()
        message = str(refused.value)
        assert f"hydra.run.dir={run_dir} is in use" in message
        assert f"pid {holder.pid} on host {socket.gethostname()}" in message
        assert "\n" not in message
        assert json.loads((run_dir / LOCK_NAME).read_text())["pid"] == holder.pid  # the holder's lock is untouched
    assert not (run_dir / LOCK_NAME).exists()  # released at the holder's exit
    lock = RunDirLock(run_dir)
    lock.acquire()  # free again
    lock.release()


def test_the_lock_of_a_killed_run_is_taken_over_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run_dir = tmp_path / "run"
    with held_by_another_process(run_dir) as holder:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    assert json.loads((run_dir / LOCK_NAME).read_text())["pid"] == holder.pid  # kill -9 left it behind
    lock = RunDirLock(run_dir)
    with caplog.at_level(logging.WARNING):
        lock.acquire()
    assert f"pid {holder.pid}" in caplog.text and "taking over" in caplog.text
    assert json.loads((run_dir / LOCK_NAME).read_text())["pid"] == os.getpid()
    lock.release()
    assert not (run_dir / LOCK_NAME).exists()


def test_a_dead_pid_on_this_host_is_stale_but_a_live_one_is_not(tmp_path: Path) -> None:
    """Where a flock is not seen (e.g. NFS without lock support) the pid decides."""
    write_lock(tmp_path / "dead", pid=dead_pid())
    lock = RunDirLock(tmp_path / "dead")
    lock.acquire()
    lock.release()
    # a live pid that is really the holder (same process start): refused
    parent = os.getppid()
    write_lock(tmp_path / "live", pid=parent, process_start=_process_start(parent))
    with pytest.raises(ConfigError, match=f"pid {parent}"):
        RunDirLock(tmp_path / "live").acquire()
    # the holder's pid reused by another process since (another start time): stale
    write_lock(tmp_path / "reused", pid=parent, process_start="another-boot:1")
    lock = RunDirLock(tmp_path / "reused")
    lock.acquire()
    lock.release()


def test_a_lock_from_another_host_is_refused_naming_the_host_and_the_file(tmp_path: Path) -> None:
    path = write_lock(tmp_path / "run", pid=dead_pid(), host="gpu-node-17")
    with pytest.raises(ConfigError) as refused:
        RunDirLock(tmp_path / "run", setting="hydra.sweep.dir").acquire()
    message = str(refused.value)
    assert "host gpu-node-17" in message and f"delete {path}" in message and "hydra.sweep.dir=DIR" in message
    assert json.loads(path.read_text())["host"] == "gpu-node-17"


def test_release_leaves_a_lock_that_is_no_longer_ours(tmp_path: Path) -> None:
    lock = RunDirLock(tmp_path)
    lock.acquire()
    (tmp_path / LOCK_NAME).unlink()  # someone deleted it by hand and another run took the dir
    other = RunDirLock(tmp_path)
    other.acquire()
    lock.release()
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert other.held
    other.release()
    assert not (tmp_path / LOCK_NAME).exists()


@pytest.mark.parametrize(
    ("environ", "launching"),
    [
        ({}, True),
        ({"LOCAL_RANK": "0", "NODE_RANK": "0", "WORLD_SIZE": "2"}, True),  # Lightning's parent after the launch
        ({"LOCAL_RANK": "1", "WORLD_SIZE": "2"}, False),  # Lightning's DDP child
        ({"RANK": "0", "LOCAL_RANK": "0"}, True),
        ({"RANK": "3", "LOCAL_RANK": "1"}, False),  # torchrun
        ({"SLURM_PROCID": "0"}, True),
        ({"SLURM_PROCID": "5"}, False),  # srun
        ({"NODE_RANK": "1"}, False),  # the launching process of another node
    ],
)
def test_only_the_launching_process_takes_the_lock(environ: dict, launching: bool) -> None:
    assert is_launching_process(environ) is launching


# ---- through the entry scripts -------------------------------------------------------------------
def _train_args(data_dir: Path, run_dir: Path, *overrides: str) -> list[str]:
    return ["logger=csv", f"dataset.data_dir={data_dir}", f"hydra.run.dir={run_dir}", *TINY_MODEL, *overrides]


def test_a_second_train_run_and_a_resume_are_refused_while_the_first_runs(
    fake_cifar_root: Path, tmp_path: Path
) -> None:
    run_dir, go = tmp_path / "run", tmp_path / "go"
    first_args = _train_args(
        fake_cifar_root,
        run_dir,
        "debug=fdr",
        "optimizer.lr=0.01",
        "+callbacks.wait._target_=tests.helpers.wait_for_file.WaitForFile",
        f"+callbacks.wait.path={go}",
    )
    env = {**os.environ, "WANDB_MODE": "offline", "NO_ALBUMENTATIONS_UPDATE": "1"}
    for name in ("MASTER_PORT", "LOCAL_RANK", "WORLD_SIZE", "NODE_RANK"):
        env.pop(name, None)
    output = tmp_path / "first.out"
    with open(output, "w") as handle:
        first = subprocess.Popen(
            [sys.executable, str(REPO_ROOT / "train.py"), *first_args],
            cwd=REPO_ROOT,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 240
        while "CIFAR10DataModule" not in (
            (run_dir / "train.log").read_text() if (run_dir / "train.log").exists() else ""
        ):
            assert first.poll() is None, output.read_text()[-3000:]
            assert time.monotonic() < deadline
            time.sleep(0.2)
        before = snapshot(run_dir)
        assert ".hydra/config.yaml" in before and LOCK_NAME in before
        for extra in (["optimizer.lr=0.5"], ["ckpt_path=last"]):  # another run, and a resume of this one
            proc = run_script("train.py", *_train_args(fake_cifar_root, run_dir, "debug=fdr", *extra), check=False)
            line = assert_one_error_line(proc, f"hydra.run.dir={run_dir} is in use", f"pid {first.pid}")
            assert snapshot(run_dir) == before, line  # nothing written: config, log and lock are the first run's
        go.touch()
        assert first.wait(timeout=240) == 0, output.read_text()[-3000:]
    finally:
        go.touch()
        if first.poll() is None:
            first.kill()
    assert "lr: 0.01" in (run_dir / ".hydra" / "config.yaml").read_text()
    assert (run_dir / "metrics.json").exists()
    assert not (run_dir / LOCK_NAME).exists()  # released at the end


def test_a_resume_takes_over_the_lock_of_a_killed_run(fake_cifar_root: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    write_lock(run_dir, pid=dead_pid())
    proc = run_script("train.py", *_train_args(fake_cifar_root, run_dir, "debug=fdr", "ckpt_path=last"))
    assert "taking over the lock of a run that is gone" in proc.stdout + proc.stderr
    assert (run_dir / "metrics.json").exists() and not (run_dir / LOCK_NAME).exists()


@pytest.mark.parametrize(
    "script",
    ["eval.py", pytest.param("predict.py", marks=pytest.mark.slow), pytest.param("audit.py", marks=pytest.mark.slow)],
)
def test_other_entry_scripts_refuse_a_held_run_dir(script: str, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with held_by_another_process(run_dir):
        proc = run_script(script, f"hydra.run.dir={run_dir}", check=False, timeout=120)
        assert_one_error_line(proc, f"hydra.run.dir={run_dir} is in use")
    assert sorted(p.name for p in run_dir.iterdir()) == []


def test_a_multirun_locks_its_sweep_dir(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    with held_by_another_process(sweep_dir):
        proc = run_script("train.py", "-m", f"hydra.sweep.dir={sweep_dir}", "optimizer.lr=0.1,0.2", check=False)
        assert_one_error_line(proc, f"hydra.sweep.dir={sweep_dir} is in use")
    assert sorted(p.name for p in sweep_dir.iterdir()) == []


@pytest.mark.slow  # ~30 s; tests/test_ddp.py's fdr run checks the same without the stale lock
def test_ddp_sim_child_ranks_run_under_the_parents_lock(fake_cifar_root: Path, tmp_path: Path) -> None:
    """Rank 1 re-runs the job in the same run dir: it must not be refused the lock rank 0 holds."""
    run_dir = tmp_path / "ddp"
    write_lock(run_dir, pid=dead_pid())  # and the parent takes over a stale lock first
    run_ddp_sim(
        run_dir,
        "debug=fdr",
        "logger=csv",
        f"dataset.data_dir={fake_cifar_root}",
        "model=small_cnn",
        "model.backbone.width=8",
        "dataset.num_workers=0",
        timeout=300,
    )
    assert (run_dir / "metrics.json").exists() and not (run_dir / LOCK_NAME).exists()
