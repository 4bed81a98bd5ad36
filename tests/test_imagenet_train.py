"""`dataset=imagenet` end to end: Hydra composition, DataLoaders, ResNets, and train.py itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from litvision.datamodules.class_folder import ClassFolderDataModule
from litvision.datamodules.readers.decode import BadImageError
from litvision.launch.resolvers import register_resolvers
from litvision.lightning_modules.backbones import build_backbone
from tests.helpers.imagenet_trees import (
    age_tree,
    bad_image_bytes,
    build_train,
    build_val,
    generated_samples,
    real_samples,
)

REPO = Path(__file__).resolve().parents[1]


def composed(overrides: list[str]):
    register_resolvers()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose("train", overrides=overrides)


def test_dataset_imagenet_selects_resnet50_and_the_imagenet_augmentation():
    cfg = composed(["dataset=imagenet"])
    assert cfg.dataset._target_ == "litvision.datamodules.imagenet.ImageNetDataModule"
    assert cfg.model.backbone.name == "resnet50"
    assert cfg.augmentation.train.transforms[0]._target_ == "albumentations.RandomResizedCrop"
    assert list(cfg.augmentation.train.transforms[0].size) == [224, 224]
    assert cfg.augmentation.eval.transforms[0].max_size == 256
    assert cfg.augmentation.normalize.mean == [0.485, 0.456, 0.406]
    assert cfg.dataset.val_split == "val" and cfg.dataset.test_split == "val"


@pytest.mark.parametrize("order", ["before", "after"])
def test_command_line_model_and_augmentation_win(order):
    picks = ["model=resnet18", "augmentation=imagenet_eval"]
    cfg = composed(picks + ["dataset=imagenet"] if order == "before" else ["dataset=imagenet"] + picks)
    assert cfg.model.backbone.name == "resnet18"
    assert cfg.augmentation.train.transforms[0]._target_ == "albumentations.SmallestMaxSize"


def test_other_datasets_keep_their_defaults():
    cfg = composed([])
    assert cfg.model.backbone.name == "resnet9" and cfg.dataset._target_.endswith("CIFAR10DataModule")


def test_resolution_is_one_key():
    cfg = composed(["dataset=imagenet", "augmentation.resolution=64"])
    train = instantiate(cfg.augmentation.train)
    evaluation = instantiate(cfg.augmentation.eval)
    assert train.transforms[0].size == (64, 64)
    assert evaluation.transforms[0].max_size == 73 and evaluation.transforms[1].height == 64


def test_imagenet_resnet50_experiment_is_the_standard_recipe():
    cfg = composed(["experiment=imagenet_resnet50", "dataset.batch_size=1024"])
    assert cfg.trainer.max_epochs == 90 and cfg.trainer.precision == "bf16-mixed"
    assert cfg.optimizer.lr == pytest.approx(0.4)  # 0.1 x 1024/256
    assert cfg.optimizer.momentum == 0.9 and cfg.optimizer.weight_decay == 1e-4
    assert cfg.scheduler._target_ == "litvision.lightning_modules.training.schedulers.warmup_cosine"
    assert cfg.scheduler.warmup_fraction == pytest.approx(5 / 90)
    assert cfg.loss.label_smoothing == 0.1
    assert cfg.model.weight_decay_norm_bias is False and cfg.model.backbone.name == "resnet50"


@pytest.mark.parametrize("name, params", [("resnet18", 11_689_512), ("resnet50", 25_557_032)])
def test_resnets_match_the_reference_parameter_counts(name, params):
    net = build_backbone(name, num_classes=1000)
    assert sum(p.numel() for p in net.parameters()) == params
    assert net(torch.zeros(2, 3, 64, 64)).shape == (2, 1000)


def test_zero_init_residual_makes_blocks_start_as_identity():
    net = build_backbone("resnet50", num_classes=10, zero_init_residual=True)
    assert all(float(block.bn3.weight.detach().abs().sum()) == 0 for block in net.layer1)


def awkward_tree(tmp_path) -> Path:
    """Generated class-folder tree with the awkward files in train/ and val/ (and test/)."""
    samples = generated_samples(tmp_path / "gen", num_classes=3, per_class=3)
    root = tmp_path / "tree"
    build_train(root, samples)
    build_val(root, samples, "folders")
    for split in ("train", "val"):
        for k, (name, data) in enumerate(bad_image_bytes().items()):
            wnid = samples[3 * (k % 3)][0]
            (root / split / wnid / f"{name}.JPEG").write_bytes(data)
    return root


def loaders_output(dm) -> dict[str, list[tuple]]:
    out = {}
    for split, loader in (("train", dm.train_dataloader()), ("val", dm.val_dataloader())):
        out[split] = [(tuple(x.shape), x.dtype, y.tolist()) for x, y in loader]
    return out


def test_awkward_files_through_worker_processes(tmp_path):
    """CMYK/grayscale/PNG-named-.JPEG come out as 3x224x224; truncated/zero-byte are skipped."""
    from albumentations import CenterCrop, Compose, HorizontalFlip, RandomResizedCrop, SmallestMaxSize

    root = awkward_tree(tmp_path)
    dm = ClassFolderDataModule(
        str(root),
        val_split="val",
        test_split="val",
        batch_size=4,
        num_workers=2,
        progress=False,
        train_transform=Compose([RandomResizedCrop(size=(224, 224)), HorizontalFlip()]),
        eval_transform=Compose([SmallestMaxSize(max_size=256), CenterCrop(224, 224)]),
    )
    dm.setup("fit")
    out = loaders_output(dm)
    assert sum(len(y) for *_, y in out["train"]) == 14  # 9 + 5 awkward, bad ones replaced
    assert sum(len(y) for *_, y in out["val"]) == 12  # 9 + 3 decodable, bad ones dropped
    for split in out:
        assert all(shape[1:] == (3, 224, 224) and dtype == torch.uint8 for shape, dtype, _ in out[split])
    # counted across the worker processes (shared memory), once per file
    assert dm.bad_image_counts() == {"train": 2, "val": 2}
    out = loaders_output(dm)  # second epoch (persistent workers): the same, no new bad files
    assert dm.bad_image_counts() == {"train": 2, "val": 2}


def test_raise_policy_stops_with_the_path(tmp_path):
    root = awkward_tree(tmp_path)
    dm = ClassFolderDataModule(
        str(root), val_split="val", test_split="val", batch_size=16, num_workers=0, on_bad_image="raise", progress=False
    )
    dm.setup("fit")
    with pytest.raises(BadImageError, match=r"(truncated|empty)\.JPEG"):
        for _ in dm.val_dataloader():
            pass


def test_class_folder_with_a_test_folder(tmp_path):
    samples = generated_samples(tmp_path / "gen", num_classes=3, per_class=4)
    root = tmp_path / "tree"
    build_train(root, samples)
    for wnid, src in samples[::4]:
        (root / "test" / wnid).mkdir(parents=True)
        (root / "test" / wnid / "t.JPEG").write_bytes(src.read_bytes())
    dm = ClassFolderDataModule(
        str(root),
        val_split="holdout",
        test_split="test",
        val_fraction=0.25,
        batch_size=2,
        num_workers=0,
        progress=False,
    )
    dm.setup("fit")
    assert (len(dm.splits.train), len(dm.splits.val), len(dm.splits.test)) == (9, 3, 3)
    assert dm.class_names == sorted({w for w, _ in samples})


def run_train(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "disabled", "NO_ALBUMENTATIONS_UPDATE": "1", "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, str(REPO / "train.py"), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def test_train_py_on_the_sample_tree_writes_metrics_with_class_names(tmp_path):
    samples = real_samples()
    root = tmp_path / "imagenet"
    build_train(root, samples)
    build_val(root, samples, "folders")
    age_tree(root)
    run_dir = tmp_path / "run"
    result = run_train(
        [
            "dataset=imagenet",
            f"dataset.data_dir={root}",
            "model=resnet18",
            "trainer=cpu",
            "debug=fdr",
            "logger=csv",
            "augmentation.resolution=64",
            "dataset.batch_size=16",
            f"hydra.run.dir={run_dir}",
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in (
        "test/acc_top1",
        "test/acc_top5",
        "val/acc_top1",
        "val/acc_top5",
        "test/recall/tench",
        "test/recall/goldfish",
        "val/recall/great_white_shark",
    ):
        assert key in metrics, key
    assert sum(key.startswith("test/recall/") for key in metrics) == 1000


@pytest.mark.slow
def test_train_py_with_awkward_files_and_workers_finishes(tmp_path):
    root = awkward_tree(tmp_path)
    run_dir = tmp_path / "run"
    result = run_train(
        [
            "dataset=imagenet",
            f"dataset.data_dir={root}",
            "model=resnet18",
            "trainer=cpu",
            "trainer.max_epochs=1",
            "logger=csv",
            "augmentation.resolution=32",
            "dataset.batch_size=4",
            "dataset.num_workers=2",
            f"hydra.run.dir={run_dir}",
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "unreadable image(s) skipped so far" in result.stderr + result.stdout
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert "test/acc_top1" in metrics


def test_an_eval_batch_of_only_unreadable_images_is_skipped(tmp_path):
    """A val batch whose every file is unreadable becomes an empty batch that counts nothing."""
    import functools

    import lightning as L
    from albumentations import Compose, Resize

    from litvision.lightning_modules.classifier import ImageClassifier

    samples = generated_samples(tmp_path / "gen", num_classes=3, per_class=2)
    root = tmp_path / "tree"
    build_train(root, samples)
    build_val(root, samples, "folders")
    wnid = samples[0][0]
    (root / "val" / wnid / "A_empty.JPEG").write_bytes(b"")  # sorted first: one whole batch of 2
    (root / "val" / wnid / "A_truncated.JPEG").write_bytes(bad_image_bytes()["truncated"])
    resize = Compose([Resize(32, 32)])
    dm = ClassFolderDataModule(
        str(root),
        val_split="val",
        test_split="val",
        batch_size=2,
        num_workers=0,
        progress=False,
        train_transform=resize,
        eval_transform=resize,
        normalize={"mean": [0.5] * 3, "std": [0.25] * 3},
    )
    model = ImageClassifier(functools.partial(build_backbone, "small_cnn", width=8))
    trainer = L.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        num_sanity_val_steps=0,
        enable_model_summary=False,
    )
    trainer.fit(model, datamodule=dm)
    confmat = model.epoch_results["val"]["confmat"]
    assert int(confmat.sum()) == 6  # the 6 readable val images, each counted once
    assert dm.bad_image_counts()["val"] == 2


def test_class_folder_config_instantiates(tmp_path):
    samples = generated_samples(tmp_path / "gen", num_classes=2, per_class=2)
    root = tmp_path / "tree"
    build_train(root, samples)
    build_val(root, samples, "folders")
    cfg = composed(
        [
            "dataset=class_folder",
            f"dataset.data_dir={root}",
            "augmentation=imagenet",
            "dataset.num_workers=0",
            "dataset.progress=false",
        ]
    )
    dm = instantiate(cfg.dataset)
    dm.setup("fit")
    images, labels = next(iter(dm.val_dataloader()))
    assert images.shape[1:] == (3, 224, 224) and dm.class_names == ["n90000000", "n90000001"]
