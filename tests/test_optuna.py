"""Optuna sweeps through hparams_search=cifar10_optuna: best value reported, NaN trials survive."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import yaml

from litvision.launch.sweep_objective import optimized_value
from tests.helpers.run_helpers import read_metrics, run_script

TINY = [
    "model=small_cnn",
    "model.backbone.width=8",
    "dataset.num_workers=0",
    "dataset.batch_size=16",
    "trainer.max_epochs=1",
]


def test_optuna_sweep_of_3_trials_survives_a_nan_trial(fake_cifar_root: Path, tmp_path: Path) -> None:
    sweep_dir = tmp_path / "optuna"
    # Grid sampler: each of the 3 learning rates runs exactly once; lr=1e9 diverges (NaN val/loss).
    run_script(
        "train.py",
        "-m",
        "hparams_search=cifar10_optuna",
        "hydra/sweeper/sampler=grid",
        "hydra.sweeper.params=null",
        "optimizer.lr=choice(0.05,0.02,1e9)",
        "optimized_metric=val/loss",
        "hydra.sweeper.direction=minimize",
        f"dataset.data_dir={fake_cifar_root}",
        "logger=csv",
        f"hydra.sweep.dir={sweep_dir}",
        *TINY,
        timeout=500,
    )
    jobs = {
        int(p.name): json.loads((p / "job_status.json").read_text()) for p in sweep_dir.iterdir() if p.name.isdigit()
    }
    assert sorted(jobs) == [0, 1, 2]
    lrs = {num: dict(o.split("=", 1) for o in job["overrides"])["optimizer.lr"] for num, job in jobs.items()}
    diverged = next(num for num, lr in lrs.items() if float(lr) == 1e9)
    assert read_metrics(sweep_dir / str(diverged))["val/loss"] is None  # NaN, stored as null
    assert jobs[diverged]["return_value"] == "inf"  # the worst value for `minimize`, not NaN

    finite = {num: read_metrics(sweep_dir / str(num))["val/loss"] for num in jobs if num != diverged}
    best = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    assert math.isfinite(best["best_value"])
    assert best["best_value"] == min(finite.values())
    assert float(best["best_params"]["optimizer.lr"]) == float(lrs[min(finite, key=finite.get)])

    rows = list(csv.DictReader((sweep_dir / "summary.csv").read_text().splitlines()))
    assert [r["status"] for r in rows] == ["COMPLETED", "COMPLETED", "DIVERGED"]
    assert float(rows[0]["val/loss"]) <= float(rows[1]["val/loss"])


def test_diverged_metric_reports_the_worst_value_for_the_direction() -> None:
    assert optimized_value({"val/acc_best": float("nan")}, "val/acc_best", "maximize") == float("-inf")
    assert optimized_value({"val/loss": None}, "val/loss", "minimize") == float("inf")
    assert optimized_value({"val/loss": 0.25}, "val/loss", "minimize") == 0.25


def test_sqlite_study_resumes_across_two_runs(fake_cifar_root: Path, tmp_path: Path) -> None:
    """README's resumable study: a second run with the same storage continues the same study.

    optuna 2.10 (what hydra-optuna-sweeper pins) fails on SQLAlchemy 2.x with an AssertionError
    in its schema check; the sweep/dev extras pin SQLAlchemy 1.4.
    """
    import optuna

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    common = [
        "hparams_search=cifar10_optuna",
        f"hydra.sweeper.storage={storage}",
        "hydra.sweeper.study_name=resume_me",
        f"dataset.data_dir={fake_cifar_root}",
        "logger=csv",
        *TINY,
        "+trainer.limit_train_batches=2",
    ]
    run_script("train.py", *common, "hydra.sweeper.n_trials=1", f"hydra.sweep.dir={tmp_path / 'first'}", timeout=500)
    first = optuna.load_study(study_name="resume_me", storage=storage)
    assert [t.number for t in first.trials] == [0]

    run_script("train.py", *common, "hydra.sweeper.n_trials=1", f"hydra.sweep.dir={tmp_path / 'second'}", timeout=500)
    study = optuna.load_study(study_name="resume_me", storage=storage)
    assert [t.number for t in study.trials] == [0, 1]  # the same study, one trial more
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    # the second run's only job is trial 1 of the study
    best = yaml.safe_load((tmp_path / "second" / "optimization_results.yaml").read_text())
    assert best["best_value"] == study.best_value
    assert (tmp_path / "second" / "0" / "metrics.json").is_file()
