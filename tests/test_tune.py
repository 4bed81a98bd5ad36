"""tune=lr_find: Lightning's LR range test before fitting; its curve, suggestion and (tune.apply) the LR used."""

from __future__ import annotations

import csv
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from litvision.tasks.tune import check_strategy, tune_options
from litvision.utils.errors import ConfigError
from tests.helpers.fake_cifar import write_fake_cifar
from tests.helpers.run_helpers import REPO_ROOT, read_metrics, run_script

TINY = ["model=small_cnn", "model.backbone.width=4", "dataset.num_workers=0", "dataset.batch_size=8"]
STEPS = 14  # Lightning's suggestion skips the first 10 points and the last one


@pytest.fixture(scope="module")
def small_cifar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tune_cifar")
    write_fake_cifar(root, n_train_per_class=8, n_test_per_class=2, class_names=list("abcde"), seed=2)
    return root


def steepest_descent_lr(curve: Path) -> float:
    """The LR of the most negative d(loss)/d(lr) past the first 10 points (Lightning's rule), from the CSV."""
    with open(curve, newline="") as handle:
        rows = [(float(row["lr"]), float(row["loss"])) for row in csv.DictReader(handle)]
    lrs, losses = np.array([r[0] for r in rows])[10:-1], np.array([r[1] for r in rows])[10:-1]
    return float(lrs[np.argmin(np.gradient(losses, lrs))])


def test_lr_find_applied_curve_png_csv_metrics_checkpoint_and_wandb(small_cifar: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = run_script(
        "train.py",
        *TINY,
        "tune=lr_find",
        "tune.apply=true",
        f"tune.num_training={STEPS}",
        "tune.early_stop_threshold=null",
        "trainer.max_epochs=1",
        "test=false",
        "logger=wandb",
        f"dataset.data_dir={small_cifar}",
        f"hydra.run.dir={run_dir}",
    )
    assert (run_dir / "lr_find.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(run_dir / "lr_find.csv", newline="") as handle:
        assert len(list(csv.DictReader(handle))) == STEPS
    suggestion = read_metrics(run_dir)["tune/lr_suggestion"]
    assert suggestion == pytest.approx(steepest_descent_lr(run_dir / "lr_find.csv"), rel=1e-6)
    assert f"suggested LR {suggestion:.3g}, applied" in proc.stdout + proc.stderr
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["hyper_parameters"]["optimizer"]["lr"] == pytest.approx(suggestion)
    assert checkpoint["optimizer_states"][0]["param_groups"][0]["initial_lr"] == pytest.approx(suggestion)
    assert not list(run_dir.glob(".lr_find_*.ckpt"))  # Lightning's temporary checkpoint is gone
    (wandb_run,) = (run_dir / "wandb").glob("offline-run-*")
    assert list((wandb_run / "files" / "media" / "images" / "tune").glob("lr_find_*.png"))


def test_lr_find_without_apply_reports_and_keeps_the_configured_lr(small_cifar: Path, tmp_path: Path) -> None:
    from litvision.tasks.train import train

    overrides = [
        *TINY,
        "tune=lr_find",
        f"tune.num_training={STEPS}",
        "tune.early_stop_threshold=null",
        "optimizer.lr=0.0123",
        "trainer.max_epochs=1",
        "test=false",
        "logger=none",
        "callbacks=[model_checkpoint,metrics_summary]",
        "+trainer.enable_progress_bar=false",
        f"dataset.data_dir={small_cifar}",
        f"paths.root_dir={tmp_path}",
        f"paths.output_dir={tmp_path}",
    ]
    with initialize_config_dir(config_dir=str(REPO_ROOT / "conf"), version_base="1.3"):
        metrics = train(compose("train", overrides=overrides))
    assert metrics["tune/lr_suggestion"] == pytest.approx(steepest_descent_lr(tmp_path / "lr_find.csv"), rel=1e-6)
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["hyper_parameters"]["optimizer"]["lr"] == 0.0123
    # the fit after the search started from the restored model: its first epoch is epoch 0, step count one epoch
    assert checkpoint["epoch"] == 0 and checkpoint["global_step"] == 5  # 36 training images / 8 per batch


def test_spawned_processes_are_refused_in_one_line_with_the_fix() -> None:
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp_spawn", logger=False)
    with pytest.raises(ConfigError) as err:
        check_strategy(trainer)
    message = str(err.value)
    assert "\n" not in message and "DDPStrategy" in message and "use trainer=ddp" in message
    check_strategy(L.Trainer(accelerator="cpu", devices=1, logger=False))  # one process: fine


def test_tune_group_options() -> None:
    with initialize_config_dir(config_dir=str(REPO_ROOT / "conf"), version_base="1.3"):
        off = compose("train", overrides=["paths.output_dir=/tmp", "paths.root_dir=/tmp"])
        on = compose("train", overrides=["paths.output_dir=/tmp", "paths.root_dir=/tmp", "tune=lr_find"])
        typo = compose(
            "train", overrides=["paths.output_dir=/tmp", "paths.root_dir=/tmp", "tune=lr_find", "+tune.aply=1"]
        )
    assert tune_options(off) is None
    assert tune_options(on).apply is False and tune_options(on).num_training == 100
    with pytest.raises(ConfigError, match=r"unknown options \['aply'\]"):
        tune_options(typo)
