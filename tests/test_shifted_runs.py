"""Shifted sets in runs: ``test_sets=[...]`` of train.py/eval.py, ``dataset=cifar10_1`` of eval.py, the
same numbers under ``trainer=ddp_sim``, and ImageNet-A scored over its 200 classes through ``trainer.test``."""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import pytest
import torch

from litvision.datamodules.readers.imagenet_index import readable_names
from litvision.datamodules.readers.shifted_sets import IMAGENET_SUBSETS, imagenet_wnids
from litvision.datamodules.shifted import ImageNetADataModule
from litvision.lightning_modules.classifier import ImageClassifier
from tests.helpers.fake_cifar import write_fake_cifar
from tests.helpers.run_helpers import read_metrics, run_script
from tests.helpers.shifted_files import write_cifar10_1, write_cifar10_c, write_class_tree

TINY = ["model=small_cnn", "model.backbone.width=8", "dataset.num_workers=0", "dataset.batch_size=8"]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("shift")
    write_fake_cifar(root / "cifar", n_train_per_class=10, n_test_per_class=3, seed=0)
    write_cifar10_1(root / "cifar10.1", "v6", n=21)  # odd: 2 ranks get 11 and 10
    write_cifar10_c(root / "CIFAR-10-C", corruptions=("fog",))
    return {name: root / name for name in ("cifar", "cifar10.1", "CIFAR-10-C")}


def sets(data: dict[str, Path]) -> list[str]:
    return [
        "test_sets=[cifar10_1,cifar10_c]",
        f"test_sets.cifar10_1.data_dir={data['cifar10.1']}",
        "test_sets.cifar10_1.version=v6",
        "test_sets.cifar10_1.num_workers=0",
        f"test_sets.cifar10_c.data_dir={data['CIFAR-10-C']}",
        "test_sets.cifar10_c.corruptions=fog",
        "test_sets.cifar10_c.severities=[1,2,5]",  # 15 images: odd
        "test_sets.cifar10_c.num_workers=0",
    ]


def test_test_sets_in_train_and_eval_single_and_ddp(data: dict[str, Path], tmp_path: Path) -> None:
    run = tmp_path / "train"
    common = [f"dataset.data_dir={data['cifar']}", *TINY]
    run_script(
        "train.py",
        *common,
        "trainer.max_epochs=2",
        "optimizer.lr=0.02",
        "logger=none",
        f"hydra.run.dir={run}",
        *sets(data),
    )
    trained = read_metrics(run)
    for name in ("cifar10_1", "cifar10_c"):
        assert 0.0 <= trained[f"{name}/acc_top1"] <= 1.0
        assert f"{name}/recall/cat" in trained and f"{name}/balanced_acc" in trained
    assert "test/acc_top1" in trained

    best = run / "checkpoints" / "best.ckpt"
    single, ddp, alone = tmp_path / "single", tmp_path / "ddp", tmp_path / "alone"
    run_script("eval.py", f"ckpt_path={best}", *common[:-1], f"hydra.run.dir={single}", *sets(data))
    proc = run_script(
        "eval.py", f"ckpt_path={best}", *common[:-1], "trainer=ddp_sim", f"hydra.run.dir={ddp}", *sets(data)
    )
    assert "Starting with 2 processes" in proc.stdout + proc.stderr
    one, two = read_metrics(single), read_metrics(ddp)
    keys = [k for k in one if k.startswith(("cifar10_1/", "cifar10_c/"))]
    assert len(keys) >= 30
    for key in keys:
        if one[key] is None or key.endswith(("/loss", "/ece")):
            assert (one[key] is None and two[key] is None) or math.isclose(one[key], two[key], rel_tol=1e-5), key
        else:
            assert one[key] == two[key], (key, one[key], two[key])  # counts summed across ranks: exact
        assert trained[key] == one[key] or key.endswith(("/loss", "/ece")), key  # the same best checkpoint

    # the set as eval.py's dataset: its test split, the same numbers as the extra test set
    run_script(
        "eval.py",
        f"ckpt_path={best}",
        "dataset=cifar10_1",
        f"dataset.data_dir={data['cifar10.1']}",
        "dataset.version=v6",
        "dataset.num_workers=0",
        f"hydra.run.dir={alone}",
    )
    assert read_metrics(alone)["test/acc_top1"] == one["cifar10_1/acc_top1"]
    refused = run_script(
        "eval.py", f"ckpt_path={best}", "dataset=cifar10_1", f"dataset.data_dir={data['cifar10.1']}", check=False
    )
    assert refused.returncode != 0
    assert "dataset.version=v6" in refused.stderr.strip().splitlines()[-1]  # one line (after Lightning's seed line)


def test_imagenet_a_is_scored_over_its_200_classes(tmp_path: Path) -> None:
    wnids, subset = imagenet_wnids(), IMAGENET_SUBSETS["imagenet_a"]
    write_class_tree(tmp_path / "imagenet-a", [wnids[i] for i in subset[:6]], per_folder=3, suffix=".jpg")
    backbone = {"_target_": "litvision.lightning_modules.backbones.build_backbone", "name": "small_cnn", "width": 4}
    torch.manual_seed(0)
    model = ImageClassifier(backbone, class_names=readable_names(wnids))
    normalize = {"mean": [0.5] * 3, "std": [0.25] * 3}
    dm = ImageNetADataModule(str(tmp_path), progress=False, num_workers=0, batch_size=6, normalize=normalize)
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_checkpointing=False)
    trainer.test(model, datamodule=dm, verbose=False)
    acc = float(trainer.callback_metrics["test/acc_top1"])

    # the authors' protocol, directly: argmax over the 200 columns, mapped back to the 1,000
    dm.setup("test")
    images, targets = next(iter(torch.utils.data.DataLoader(dm.splits.test, batch_size=100)))
    with torch.no_grad():
        logits = model(dm.normalize(images))
    predicted = torch.as_tensor(subset)[logits[:, list(subset)].argmax(dim=1)]
    assert acc == pytest.approx(float((predicted == targets).float().mean()))
    unmasked = float((logits.argmax(dim=1) == targets).float().mean())
    assert (logits.argmax(dim=1) != predicted).any(), "a random 1000-way model should predict outside the 200"
    assert unmasked <= acc
