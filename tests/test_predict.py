"""predict.py: per-sample predictions of a checkpoint for a dataset split or a folder of images.

The probabilities are checked against the checkpoint's model run by hand on the same
images; ``trainer=ddp_sim`` must write the very same rows as a single process.
"""

from __future__ import annotations

import csv
import json
from functools import partial
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image

from litvision.callbacks.prediction_writer import PredictionWriter
from litvision.datamodules.cifar10 import CIFAR10DataModule
from litvision.datamodules.prediction import PredictionDataModule
from litvision.datamodules.readers.cifar_pickle import load_split
from litvision.datamodules.transforms.pipeline import BatchNormalize
from litvision.lightning_modules.backbones import build_backbone
from litvision.lightning_modules.classifier import ImageClassifier
from litvision.lightning_modules.predictor import ProbabilityPredictor
from litvision.utils.errors import ConfigError
from tests.helpers.fake_cifar import write_fake_cifar
from tests.helpers.run_helpers import run_script

CLASSES = ["a", "b", "c", "d", "e"]
TINY = ["model=small_cnn", "model.backbone.width=8", "dataset.num_workers=0", "dataset.batch_size=8"]
CIFAR_NORM = {"mean": [0.4914, 0.4822, 0.4465], "std": [0.2470, 0.2435, 0.2616]}


@pytest.fixture(scope="module")
def odd_cifar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """5 classes, 95 train-pool and 15 test images: 2 ranks get 8 and 7 test images."""
    root = tmp_path_factory.mktemp("pred_cifar")
    write_fake_cifar(root, n_train_per_class=19, n_test_per_class=3, class_names=CLASSES, seed=1)
    return root


@pytest.fixture(scope="module")
def checkpoint(odd_cifar: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("pred_train")
    run_script(
        "train.py",
        "trainer.max_epochs=1",
        "test=false",
        "logger=none",
        "optimizer.lr=0.02",
        f"dataset.data_dir={odd_cifar}",
        f"hydra.run.dir={run_dir}",
        *TINY,
    )
    return next((run_dir / "checkpoints").glob("best*.ckpt"))


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def by_hand(ckpt: Path, images_hwc: np.ndarray) -> np.ndarray:
    """The checkpoint's softmax on uint8 HWC images, normalised as training did."""
    model = ImageClassifier.load_from_checkpoint(ckpt, map_location="cpu", weights_only=True).eval()
    x = BatchNormalize(**CIFAR_NORM)(torch.from_numpy(images_hwc).permute(0, 3, 1, 2))
    with torch.no_grad():
        return model(x).softmax(dim=1).numpy()


@pytest.fixture(scope="module")
def single_process(checkpoint: Path, odd_cifar: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pred_single")
    run_script(
        "predict.py",
        f"ckpt_path={checkpoint}",
        f"dataset.data_dir={odd_cifar}",
        "split=test",
        f"hydra.run.dir={out}",
        *TINY,
    )
    return out


def test_test_split_rows_match_the_model_run_by_hand(single_process: Path, checkpoint: Path, odd_cifar: Path) -> None:
    rows = read_csv(single_process / "predictions.csv")
    probs = np.load(single_process / "probabilities.npy")
    images, labels = load_split(odd_cifar / "cifar-10-batches-py", train=False)
    assert list(rows[0]) == ["id", "pred", "top5", "prob_top1", "label"]
    assert [r["id"] for r in rows] == [f"test/{n}" for n in range(15)]
    assert [r["label"] for r in rows] == [CLASSES[y] for y in labels]
    np.testing.assert_allclose(probs, by_hand(checkpoint, images), rtol=1e-4, atol=1e-6)
    for row, p in zip(rows, probs, strict=True):
        order = np.argsort(-p)
        assert row["pred"] == CLASSES[order[0]]
        assert row["top5"].split("|") == [CLASSES[i] for i in order]
        assert float(row["prob_top1"]) == pytest.approx(p.max(), abs=1e-6)
    meta = json.loads((single_process / "predictions.json").read_text())
    assert meta["classes"] == CLASSES and meta["num_samples"] == 15 and meta["missing_ids"] == []


def test_ddp_sim_writes_every_sample_once_in_the_same_order(
    single_process: Path, checkpoint: Path, odd_cifar: Path, tmp_path: Path
) -> None:
    proc = run_script(
        "predict.py",
        f"ckpt_path={checkpoint}",
        f"dataset.data_dir={odd_cifar}",
        "split=test",
        "trainer=ddp_sim",
        f"hydra.run.dir={tmp_path}",
        *TINY,
        timeout=420,
    )
    assert (tmp_path / "predict_ddp_process_1.log").exists(), proc.stderr[-2000:]  # really two processes
    assert read_csv(tmp_path / "predictions.csv") == read_csv(single_process / "predictions.csv")
    np.testing.assert_allclose(
        np.load(tmp_path / "probabilities.npy"), np.load(single_process / "probabilities.npy"), atol=1e-6
    )


def test_images_folder_any_nesting_no_labels(checkpoint: Path, tmp_path: Path) -> None:
    folder = tmp_path / "images"
    (folder / "x" / "y").mkdir(parents=True)
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (3, 32, 32, 3), dtype=np.uint8)
    Image.fromarray(pixels[0]).save(folder / "b.png")
    Image.fromarray(pixels[1]).save(folder / "x" / "y" / "a.PNG")
    Image.fromarray(pixels[2]).save(folder / "x" / "c.png")
    (folder / "readme.txt").write_text("not an image")
    (folder / ".hidden.png").write_bytes(b"")
    out = tmp_path / "out"
    run_script("predict.py", f"ckpt_path={checkpoint}", f"images={folder}", f"hydra.run.dir={out}", *TINY)
    rows = read_csv(out / "predictions.csv")
    assert list(rows[0]) == ["id", "pred", "top5", "prob_top1"]
    assert [r["id"] for r in rows] == ["b.png", "x/c.png", "x/y/a.PNG"]
    expected = by_hand(checkpoint, pixels[[0, 2, 1]])
    np.testing.assert_allclose(np.load(out / "probabilities.npy"), expected, rtol=1e-4, atol=1e-6)


def test_predict_ends_with_a_short_summary(checkpoint: Path, odd_cifar: Path, tmp_path: Path) -> None:
    """The last lines: how many images, the unreadable ones, accuracy when labels are known, the files."""
    out = tmp_path / "split"
    proc = run_script(
        "predict.py",
        f"ckpt_path={checkpoint}",
        f"dataset.data_dir={odd_cifar}",
        "split=test",
        f"hydra.run.dir={out}",
        *TINY,
    )
    meta = json.loads((out / "predictions.json").read_text())
    assert proc.stdout.strip().splitlines()[-4:] == [
        f"Predicted 15 images ({meta['source']}), none unreadable",
        f"Top-1 accuracy against the labels: {meta['accuracy_top1']:.4f}",
        f"Predictions: {out / 'predictions.csv'}",
        f"Probabilities: {out / 'probabilities.npy'}",
    ]

    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(folder / "ok.png")
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    proc = run_script(
        "predict.py", f"ckpt_path={checkpoint}", f"images={folder}", f"hydra.run.dir={tmp_path / 'dir'}", *TINY
    )
    lines = proc.stdout.strip().splitlines()
    assert lines[-3].startswith("Predicted 1 image (") and lines[-3].endswith(", 1 unreadable left out")
    assert lines[-2:] == [
        f"Predictions: {tmp_path / 'dir' / 'predictions.csv'}",
        f"Probabilities: {tmp_path / 'dir' / 'probabilities.npy'}",
    ]


# ---- in-process: the data module and the writer ----------------------------------------------


def tiny_classifier(names=CLASSES) -> ImageClassifier:
    return ImageClassifier(backbone=partial(build_backbone, "small_cnn", width=8), class_names=names)


def predict_in_process(classifier, data, out_dir: Path) -> dict:
    writer = PredictionWriter(out_dir)
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, callbacks=[writer])
    trainer.predict(ProbabilityPredictor(classifier), datamodule=data, return_predictions=False)
    return writer.summary


def cifar_source(root: Path, **kwargs) -> CIFAR10DataModule:
    return CIFAR10DataModule(
        data_dir=str(root), batch_size=8, num_workers=0, download=False, normalize=CIFAR_NORM, **kwargs
    )


def test_split_choices_name_the_runs_splits_and_the_source_splits(odd_cifar: Path, tmp_path: Path) -> None:
    reference = cifar_source(odd_cifar)
    reference.setup()
    for split in ("train", "val", "test"):
        data = PredictionDataModule(split=split, source=cifar_source(odd_cifar))
        data.setup()
        assert data.ids.tolist() == getattr(reference.splits, split).ids.tolist()
        assert data.dataset.transform is None  # the eval preprocessing, never the training augmentation
    data = PredictionDataModule(split="source_train", source=cifar_source(odd_cifar))
    data.setup()
    assert data.ids.tolist() == [f"train/{n}" for n in range(95)]
    path = tmp_path / "ex.txt"
    path.write_text("test/0\ntest/14\n")
    data = PredictionDataModule(split="test", source=cifar_source(odd_cifar, exclude_ids=str(path)))
    data.setup()
    assert data.ids.tolist() == [f"test/{n}" for n in range(1, 14)]
    with pytest.raises(ConfigError, match="split='holdout'"):
        PredictionDataModule(split="holdout", source=cifar_source(odd_cifar))


def test_images_of_different_sizes_without_a_resize_is_a_config_error(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.zeros((48, 40, 3), np.uint8)).save(tmp_path / "b.jpg")
    data = PredictionDataModule(images=str(tmp_path))
    with pytest.raises(ConfigError, match=r"different sizes \(a.png: 32x32, b.jpg: 40x48\).*augmentation=imagenet"):
        data.setup()


def test_an_unreadable_image_gets_no_row_and_is_listed(tmp_path: Path) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("a.png", "c.png"):
        Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(folder / name)
    (folder / "b.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    data = PredictionDataModule(images=str(folder), normalize=CIFAR_NORM, batch_size=2)
    summary = predict_in_process(tiny_classifier(), data, tmp_path / "out")
    assert [r["id"] for r in read_csv(tmp_path / "out" / "predictions.csv")] == ["a.png", "c.png"]
    assert summary["missing_ids"] == ["b.jpg"] and np.load(tmp_path / "out" / "probabilities.npy").shape == (2, 5)


def test_a_dataset_with_other_classes_is_refused(odd_cifar: Path, tmp_path: Path) -> None:
    data = PredictionDataModule(split="test", source=cifar_source(odd_cifar))
    with pytest.raises(ConfigError, match="checkpoint's model has 5 classes"):
        predict_in_process(tiny_classifier(["a", "b", "c", "d", "z"]), data, tmp_path)
