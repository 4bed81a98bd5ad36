"""Submitit launchers: real local jobs, and the SLURM submission Lightning expects."""

from __future__ import annotations

import csv
import os
import stat
from pathlib import Path

import pytest

from tests.helpers.run_helpers import read_metrics, run_script
from tests.helpers.wandb_offline import read_run

TINY = [
    "model=small_cnn",
    "model.backbone.width=8",
    "dataset.num_workers=0",
    "dataset.batch_size=16",
    "trainer.max_epochs=1",
]


def test_submitit_local_launches_two_jobs_that_finish(fake_cifar_root: Path, tmp_path: Path) -> None:
    sweep_dir = tmp_path / "local_sweep"
    run_script(
        "train.py",
        "-m",
        "hydra/launcher=local",
        "optimizer.lr=0.05,0.02",
        "logger=wandb",
        f"dataset.data_dir={fake_cifar_root}",
        f"hydra.sweep.dir={sweep_dir}",
        *TINY,
        timeout=500,
    )
    # two submitit jobs, each its own process with its own submitit folder, log and pickled result
    job_folders = [p for p in (sweep_dir / ".submitit").iterdir() if p.name.isdigit()]
    assert len(job_folders) == 2
    assert all(list(folder.glob("*_result.pkl")) for folder in job_folders)
    for job in ("0", "1"):
        assert "test/acc_top1" in read_metrics(sweep_dir / job)
        (run,) = [read_run(r) for r in (sweep_dir / job / "wandb").glob("offline-run-*")]
        assert run.group == "local_sweep" and run.exit_code == 0
    rows = list(csv.DictReader((sweep_dir / "summary.csv").read_text().splitlines()))
    assert sorted(r["optimizer.lr"] for r in rows) == ["0.02", "0.05"]
    assert {r["status"] for r in rows} == {"COMPLETED"}


def _tool(path: Path, body: str) -> None:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.fixture
def fake_slurm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No cluster here: test doubles of `srun` (submitit checks it exists) and `sbatch` (keeps
    the submission script at the returned path, then refuses the job) stand in for SLURM."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _tool(bin_dir / "srun", "exit 1\n")
    _tool(
        bin_dir / "sbatch",
        'for last; do :; done\ncp "$last" "$SBATCH_CAPTURE"\necho "sbatch: no SLURM here" >&2\nexit 1\n',
    )
    captured = tmp_path / "job.sbatch"
    monkeypatch.setenv("SBATCH_CAPTURE", str(captured))
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return captured


def test_slurm_launcher_asks_for_one_task_per_gpu(tmp_path: Path, fake_slurm: Path) -> None:
    """hydra/launcher=slurm + trainer=multinode -> the sbatch script Lightning's SLURM support expects."""
    captured = fake_slurm
    proc = run_script(
        "train.py",
        "-m",
        "hydra/launcher=slurm",
        "trainer=multinode",
        "trainer.num_nodes=2",
        "trainer.devices=4",
        "hydra.launcher.partition=gpu",
        "hydra.launcher.timeout_min=90",
        "optimizer.lr=0.1,0.05",
        "ckpt_path=last",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        check=False,
        timeout=120,
    )
    assert proc.returncode != 0 and "no SLURM here" in proc.stderr
    script = captured.read_text()
    for line in [
        "#SBATCH --nodes=2",  # trainer.num_nodes
        "#SBATCH --ntasks-per-node=4",  # one task per GPU: Lightning's SLURMEnvironment checks this
        "#SBATCH --gpus-per-node=4",  # trainer.devices
        "#SBATCH --partition=gpu",
        "#SBATCH --time=90",
        "#SBATCH --array=0-1",  # the two sweep jobs
        "#SBATCH --job-name=train",  # not "bash"/"interactive": Lightning then trusts SLURM's env
    ]:
        assert line in script, (line, script)
    assert "srun" in script and "submitit.core._submit" in script


@pytest.mark.parametrize(
    ("overrides", "wanted", "unwanted"),
    [
        # the README's Optuna-on-SLURM line with the default (single-CPU) trainer: 1 node, 1 task, no GPU
        (
            ["hparams_search=cifar10_optuna", "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=2"],
            ["#SBATCH --nodes=1", "#SBATCH --ntasks-per-node=1", "#SBATCH --array=0-1"],
            ["--gpus-per-node"],
        ),
        (
            ["trainer=gpu", "optimizer.lr=0.1"],
            ["#SBATCH --nodes=1", "#SBATCH --ntasks-per-node=1", "#SBATCH --gpus-per-node=1"],
            [],
        ),
        # 2 CPU processes (gloo): one task per process, and no GPU asked for a CPU job
        (
            ["trainer=ddp_sim", "optimizer.lr=0.1"],
            ["#SBATCH --nodes=1", "#SBATCH --ntasks-per-node=2"],
            ["--gpus-per-node"],
        ),
    ],
    ids=["optuna-default-trainer", "gpu", "ddp_sim"],
)
def test_slurm_launcher_works_with_every_trainer(
    overrides: list[str], wanted: list[str], unwanted: list[str], tmp_path: Path, fake_slurm: Path
) -> None:
    proc = run_script(
        "train.py",
        "-m",
        "hydra/launcher=slurm",
        *overrides,
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        check=False,
        timeout=120,
    )
    assert proc.returncode != 0 and "no SLURM here" in proc.stderr, proc.stderr[-3000:]
    script = fake_slurm.read_text()
    assert all(line in script for line in wanted), (wanted, script)
    assert not any(text in script for text in unwanted), script


def test_slurm_launcher_refuses_all_gpus_without_a_count(tmp_path: Path, fake_slurm: Path) -> None:
    """trainer=ddp means all visible GPUs (devices=-1): SLURM needs a number, and says which override."""
    proc = run_script(
        "train.py",
        "-m",
        "hydra/launcher=slurm",
        "trainer=ddp",
        "optimizer.lr=0.1",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        check=False,
        timeout=120,
    )
    assert proc.returncode != 0 and not fake_slurm.exists()
    assert "trainer.devices=8" in proc.stderr and "got -1" in proc.stderr


@pytest.mark.slow
def test_submitit_job_with_ddp_ranks(fake_cifar_root: Path, tmp_path: Path) -> None:
    """Inside a submitit job sys.argv is submitit's runner: rank 1 must still re-run train.py's job."""
    sweep_dir = tmp_path / "local_ddp"
    run_script(
        "train.py",
        "-m",
        "hydra/launcher=local",
        "trainer=ddp_sim",
        "optimizer.lr=0.05",
        "logger=csv",
        f"dataset.data_dir={fake_cifar_root}",
        f"hydra.sweep.dir={sweep_dir}",
        *TINY,
        timeout=500,
    )
    assert (sweep_dir / "0" / "train_ddp_process_1.log").exists()
    assert read_metrics(sweep_dir / "0")["epoch"] == 0
    logs = "".join(p.read_text() for p in (sweep_dir / ".submitit").rglob("*_log.*"))
    assert "Starting with 2 processes" in logs
