"""Hydra multiruns: a job dir and a W&B run per job, grouped by sweep, and the sweep summary."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from litvision.launch.sweep_summary import STATUS_FILE, metric_direction, write_summary
from tests.helpers.run_helpers import read_metrics, run_script
from tests.helpers.wandb_offline import read_run

TINY = ["model=small_cnn", "dataset.num_workers=0", "dataset.batch_size=16", "trainer.max_epochs=1"]


def test_2x2_multirun_with_one_failing_job(fake_cifar_root: Path, tmp_path: Path) -> None:
    # The data dir depends on both swept values; in the (0.05, 4) folder data_batch_1 is damaged, so
    # that job, and only that one, fails while reading its data (a real DataError from the DataModule,
    # after the job's W&B run started; a missing folder would now be refused before any logger starts).
    for combo in ("0.1_8", "0.1_4", "0.05_8"):
        (tmp_path / f"data_{combo}").symlink_to(fake_cifar_root)
    shutil.copytree(fake_cifar_root, tmp_path / "data_0.05_4")
    (tmp_path / "data_0.05_4" / "cifar-10-batches-py" / "data_batch_1").write_bytes(b"damaged")
    sweep_dir = tmp_path / "lr_width_sweep"
    proc = run_script(
        "train.py",
        "-m",
        "optimizer.lr=0.1,0.05",
        "model.backbone.width=8,4",
        f"dataset.data_dir={tmp_path}/data_${{optimizer.lr}}_${{model.backbone.width}}",
        "dataset.download=false",
        "logger=wandb",
        f"hydra.sweep.dir={sweep_dir}",
        *TINY,
        check=False,
        timeout=400,
    )
    # Hydra runs every job, then reports the failure through the exit code
    assert proc.returncode != 0
    job_dirs = sorted(p for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit())
    assert [p.name for p in job_dirs] == ["0", "1", "2", "3"]
    statuses = {p.name: json.loads((p / STATUS_FILE).read_text()) for p in job_dirs}
    assert statuses["3"]["status"] == "FAILED" and "data_batch_1" in statuses["3"]["error"]
    for name in ("0", "1", "2"):
        assert statuses[name]["status"] == "COMPLETED"
        assert "test/acc_top1" in read_metrics(sweep_dir / name)

    # one W&B run per job (the failed one too, marked with exit code 1), all in the sweep's group
    runs = {p.name: [read_run(r) for r in (p / "wandb").glob("offline-run-*")] for p in job_dirs}
    assert all(len(found) == 1 for found in runs.values()), runs
    assert len({found[0].run_id for found in runs.values()}) == 4
    assert {found[0].group for found in runs.values()} == {"lr_width_sweep"}
    assert runs["3"][0].exit_code == 1 and runs["0"][0].exit_code == 0

    # the summary: 4 rows, finished jobs best first by val/acc_best, the failed one last
    with open(sweep_dir / "summary.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 4
    assert [r["status"] for r in rows] == ["COMPLETED"] * 3 + ["FAILED"]
    assert (rows[-1]["optimizer.lr"], rows[-1]["model.backbone.width"]) == ("0.05", "4")
    values = [float(r["val/acc_best"]) for r in rows[:3]]
    assert values == sorted(values, reverse=True)
    for row in rows[:3]:
        assert float(row["val/acc_best"]) == pytest.approx(
            read_metrics(sweep_dir / row["job"])["val/acc_best"], abs=1e-4
        )
    markdown = (sweep_dir / "summary.md").read_text()
    assert markdown.count("| COMPLETED |") == 3 and markdown.count("| FAILED |") == 1


def _fake_job(sweep_dir: Path, num: int, status: str, metrics: dict | None, overrides: list[str]) -> None:
    job = sweep_dir / str(num)
    job.mkdir(parents=True)
    record = {
        "job_num": num,
        "status": status,
        "overrides": overrides,
        "optimized_metric": "val/loss",
        "error": "RuntimeError: boom" if status == "FAILED" else None,
        "output_dir": str(job),
    }
    (job / STATUS_FILE).write_text(json.dumps(record))
    if metrics is not None:
        (job / "metrics.json").write_text(json.dumps(metrics))


def test_summary_sorts_by_direction_and_marks_diverged_and_failed(tmp_path: Path) -> None:
    _fake_job(tmp_path, 0, "COMPLETED", {"val/loss": 0.9, "test/acc_top1": 0.5}, ["optimizer.lr=0.1", "seed=1"])
    _fake_job(tmp_path, 1, "COMPLETED", {"val/loss": 0.4, "test/acc_top1": 0.7}, ["optimizer.lr=0.05", "seed=1"])
    _fake_job(
        tmp_path, 2, "COMPLETED", {"val/loss": None}, ["optimizer.lr=10", "seed=1"]
    )  # NaN -> null in metrics.json
    _fake_job(tmp_path, 3, "FAILED", None, ["optimizer.lr=-1", "seed=1"])
    rows = write_summary(tmp_path, metric_direction("val/loss"))
    assert [(r["job_num"], r["status"]) for r in rows] == [
        (1, "COMPLETED"),
        (0, "COMPLETED"),
        (2, "DIVERGED"),
        (3, "FAILED"),
    ]
    header = (tmp_path / "summary.csv").read_text().splitlines()[0].split(",")
    assert "optimizer.lr" in header and "seed" not in header  # only the swept keys get columns
    assert "RuntimeError: boom" in (tmp_path / "summary.md").read_text()


def test_metric_direction() -> None:
    assert metric_direction("val/acc_best") == "maximize"
    assert metric_direction("val/loss") == "minimize"
    from omegaconf import OmegaConf

    assert metric_direction("val/loss", OmegaConf.create({"sweeper": {"direction": "maximize"}})) == "maximize"


@pytest.mark.slow
def test_ddp_jobs_inside_a_multirun(fake_cifar_root: Path, tmp_path: Path) -> None:
    """`-m` + strategy=ddp: rank 1 must re-run its own job, not the whole sweep again."""
    sweep_dir = tmp_path / "ddp_sweep"
    run_script(
        "train.py",
        "-m",
        "trainer=ddp_sim",
        "optimizer.lr=0.1,0.05",
        "logger=csv",
        f"dataset.data_dir={fake_cifar_root}",
        f"hydra.sweep.dir={sweep_dir}",
        "model.backbone.width=8",
        *TINY,
        timeout=600,
    )
    job_dirs = sorted(p.name for p in sweep_dir.iterdir() if p.is_dir())
    assert job_dirs == ["0", "1"]  # no extra sweep started by a child rank
    for name in job_dirs:
        assert (sweep_dir / name / "train_ddp_process_1.log").exists()  # rank 1 ran in this job's dir
        assert read_metrics(sweep_dir / name)["epoch"] == 0
    rows = list(csv.DictReader((sweep_dir / "summary.csv").read_text().splitlines()))
    assert sorted(r["optimizer.lr"] for r in rows) == ["0.05", "0.1"]


def test_sweep_dir_resolves_before_any_job_exists(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A sweeper reads ``hydra.sweep.dir`` before any job, when ``${hydra:...}`` cannot resolve: the
    default sweep dir (under ``paths.log_dir``) used to end every `-m` run without an explicit
    ``hydra.sweep.dir`` in ``InterpolationResolutionError: HydraConfig was not set``."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    monkeypatch.chdir(tmp_path)
    with initialize_config_dir(config_dir=str(Path(__file__).resolve().parents[1] / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=["optimizer.lr=0.1"], return_hydra_config=True)
    monkeypatch.setattr(HydraConfig.instance(), "cfg", None)  # as in the sweeper: no job yet
    sweep_dir = Path(cfg.hydra.sweep.dir)
    assert sweep_dir.parent == tmp_path / "logs" / "train" / "multiruns"


def test_a_multirun_without_sweep_dir_runs_under_the_start_dir(fake_cifar_root: Path, tmp_path: Path) -> None:
    """`python train.py -m ...` as the README writes it: no hydra.sweep.dir, jobs in ./logs/train/multiruns/<time>/."""
    run_script(
        "train.py",
        "-m",
        "optimizer.lr=0.1,0.05",
        "debug=fdr",
        f"dataset.data_dir={fake_cifar_root}",
        "logger=none",
        *TINY,
        cwd=tmp_path,
    )
    (sweep_dir,) = (tmp_path / "logs" / "train" / "multiruns").iterdir()
    rows = list(csv.DictReader((sweep_dir / "summary.csv").read_text().splitlines()))
    assert [r["status"] for r in rows] == ["COMPLETED", "COMPLETED"]
