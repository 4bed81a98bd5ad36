"""train.py / eval.py end to end through the real command line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.helpers.fake_cifar import CIFAR10_CLASSES
from tests.helpers.run_helpers import TINY_MODEL, read_metrics, run_script

RECALL_KEYS = [f"test/recall/{name}" for name in CIFAR10_CLASSES]


def test_fast_dev_run_writes_metrics_json(fake_cifar_root, tmp_path) -> None:
    run_dir = tmp_path / "fdr"
    run_script(
        "train.py",
        "debug=fdr",
        "logger=csv",
        f"dataset.data_dir={fake_cifar_root}",
        f"hydra.run.dir={run_dir}",
        *TINY_MODEL,
    )
    metrics = read_metrics(run_dir)
    for key in ["test/acc_top1", "test/acc_top5", "val/acc_top1", *RECALL_KEYS]:
        assert key in metrics, key
    assert 0.0 <= metrics["test/acc_top1"] <= metrics["test/acc_top5"] <= 1.0


def test_one_epoch_run_checkpoints_metrics_and_offline_wandb(fake_cifar_root, tmp_path) -> None:
    run_dir = tmp_path / "run"
    run_script(
        "train.py",
        "trainer.max_epochs=1",
        "logger=wandb",
        f"dataset.data_dir={fake_cifar_root}",
        f"hydra.run.dir={run_dir}",
        *TINY_MODEL,
    )
    metrics = read_metrics(run_dir)
    for key in ["test/acc_top1", "test/acc_top5", "test/balanced_acc", "test/f1_macro", "val/acc_best", *RECALL_KEYS]:
        assert key in metrics, key

    # best and last checkpoints, self-describing (class names inside)
    ckpts = sorted(p.name for p in (run_dir / "checkpoints").glob("*.ckpt"))
    assert "last.ckpt" in ckpts and any(name.startswith("best") for name in ckpts)
    # weights_only=True: the hyper-parameters are plain values, no pickled code (see test_checkpoints.py)
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["hyper_parameters"]["class_names"] == list(CIFAR10_CLASSES)
    assert ckpt["hyper_parameters"]["backbone"]["name"] == "small_cnn"

    # W&B ran offline and wrote its run files under the run dir, with our metric keys in them
    runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, runs
    run_file = next(runs[0].glob("*.wandb")).read_bytes()
    for key in [b"val/acc_top1", b"val/recall/airplane", b"test/acc_top5", b"test/recall/truck", b"train/loss_step"]:
        assert key in run_file, key
    assert list((runs[0] / "files" / "media").rglob("*confusion_matrix*.png")), "no confusion-matrix image logged"
    assert b"dataset" in run_file and b"optimizer" in run_file  # the resolved config was logged

    # eval.py on the same checkpoint reproduces the test metrics (1 epoch: best == last)
    eval_dir = tmp_path / "eval"
    run_script(
        "eval.py",
        f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}",
        f"dataset.data_dir={fake_cifar_root}",
        f"hydra.run.dir={eval_dir}",
        "dataset.num_workers=0",
    )
    evaluated = read_metrics(eval_dir)
    for key in ["test/acc_top1", "test/acc_top5", *RECALL_KEYS]:
        assert evaluated[key] == pytest.approx(metrics[key], abs=1e-6), key

    # train=false ckpt_path=X tests X: exactly eval.py's numbers (it used to test untrained weights)
    test_only_dir = tmp_path / "test_only"
    run_script(
        "train.py",
        "train=false",
        f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}",
        "logger=csv",
        f"dataset.data_dir={fake_cifar_root}",
        f"hydra.run.dir={test_only_dir}",
        *TINY_MODEL,
    )
    tested = read_metrics(test_only_dir)
    test_keys = sorted(k for k in evaluated if k.startswith("test/"))
    assert test_keys and sorted(k for k in tested if k.startswith("test/")) == test_keys
    assert {k: tested[k] for k in test_keys} == {k: evaluated[k] for k in test_keys}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("dataset.batch_sizee=3", "Could not override 'dataset.batch_sizee'"),
        ("dataset=cifar11", "Could not find 'dataset/cifar11'"),
    ],
)
def test_bad_config_fails_with_hydra_error(override: str, message: str, tmp_path: Path) -> None:
    proc = run_script("train.py", override, f"hydra.run.dir={tmp_path}", check=False)
    assert proc.returncode != 0
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_seed_null_draws_a_seed_records_it_and_reproduces(fake_cifar_root, tmp_path) -> None:
    """seed=null (documented as "not seeded") crashed in DistributedSampler (None + epoch)."""
    from omegaconf import OmegaConf

    common = ["debug=fdr", "logger=csv", f"dataset.data_dir={fake_cifar_root}", *TINY_MODEL]
    drawn_dir = tmp_path / "drawn"
    run_script("train.py", *common, "seed=null", f"hydra.run.dir={drawn_dir}")
    seed = OmegaConf.load(drawn_dir / ".hydra" / "config.yaml").seed  # recorded in the run's config
    assert isinstance(seed, int)
    assert f"drew seed={seed}" in (drawn_dir / "train.log").read_text()  # and logged
    again_dir = tmp_path / "again"
    run_script("train.py", *common, f"seed={seed}", f"hydra.run.dir={again_dir}")
    assert read_metrics(again_dir) == read_metrics(drawn_dir)


def test_eval_refuses_checkpoint_of_other_classes(fake_cifar_root, tmp_path) -> None:
    from tests.helpers.fake_cifar import write_fake_cifar

    other = tmp_path / "other"
    write_fake_cifar(other, n_train_per_class=2, n_test_per_class=1, class_names=[f"c{i}" for i in range(10)])
    run_dir = tmp_path / "run"
    run_script(
        "train.py",
        "debug=fdr",
        "logger=none",
        "trainer.fast_dev_run=false",
        "trainer.max_epochs=1",
        "+trainer.limit_train_batches=1",
        "+trainer.limit_val_batches=1",
        "test=false",
        f"dataset.data_dir={fake_cifar_root}",
        f"hydra.run.dir={run_dir}",
        *TINY_MODEL,
    )
    proc = run_script(
        "eval.py",
        f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}",
        f"dataset.data_dir={other}",
        f"hydra.run.dir={tmp_path / 'eval'}",
        "dataset.num_workers=0",
        check=False,
    )
    assert proc.returncode != 0
    assert "evaluate it on the dataset it was trained on" in proc.stderr
    assert not (tmp_path / "eval" / "metrics.json").exists()


def test_metrics_json_is_world_readable_and_complete(tmp_path) -> None:
    import json
    import os
    import stat

    from litvision.utils.atomic_write import write_json_atomic

    path = tmp_path / "metrics.json"
    write_json_atomic(path, {"test/acc_top1": 0.5})
    assert json.loads(path.read_text()) == {"test/acc_top1": 0.5}
    assert stat.S_IMODE(os.stat(path).st_mode) & 0o044 == 0o044  # other tools (and users) can read it
    with pytest.raises(ValueError):
        write_json_atomic(path, {"bad": float("nan")})  # strict JSON: NaN is refused...
    assert json.loads(path.read_text()) == {"test/acc_top1": 0.5}  # ...and the old file survives
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temp file left behind
