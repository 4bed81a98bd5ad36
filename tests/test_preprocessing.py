"""Preprocessing that travels: weights -> the run's augmentation -> every checkpoint -> eval.py / predict.py.

A tree of photos of mixed sizes, trained at 32 px (resize 37, crop 32): eval.py and predict.py
must apply that without being told (before, they used their own default augmentation: 224 px,
or none at all, which stops predict.py images= at the first batch of mixed sizes).
"""

from __future__ import annotations

import logging
from pathlib import Path

import albumentations as A
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from PIL import Image

from litvision.datamodules.transforms.preprocessing import batch_normalize, describe, eval_transform
from litvision.lightning_modules.checkpoint_targets import check_checkpoint_targets
from litvision.lightning_modules.checkpoints import load_classifier
from litvision.lightning_modules.weights.export import export_backbone
from litvision.tasks.preprocessing import apply_weights_preprocessing
from litvision.utils.errors import DataError
from litvision.utils.preprocessing import IMAGENET_MEAN, IMAGENET_STD, Preprocessing
from tests.helpers.run_helpers import REPO_ROOT, read_metrics, run_script

TINY = ["model=small_cnn", "model.backbone.width=4", "dataset.num_workers=0", "dataset.batch_size=8"]
SIZES = [(50, 60), (64, 48), (80, 80), (45, 70)]
TRAINED = Preprocessing(IMAGENET_MEAN, IMAGENET_STD, resolution=32, resize=37, crop=32, interpolation="bilinear")


def compose_config(config_name: str, *overrides: str, output_dir: Path | None = None):
    paths = [f"paths.root_dir={output_dir or '/tmp'}", f"paths.output_dir={output_dir or '/tmp/out'}"]
    with initialize_config_dir(config_dir=str(REPO_ROOT / "conf"), version_base="1.3"):
        return compose(config_name, overrides=[*paths, *overrides])


@pytest.fixture(scope="module")
def photo_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 classes x 6 PNGs of four different sizes in train/ and val/."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for name, level in (("cat", 60), ("dog", 190)):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(6):
                h, w = SIZES[i % 4]
                image = np.clip(rng.normal(level, 40, (h, w, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(image).save(folder / f"{i}.png")
    return root


def in_process(task, config_name: str, *overrides: str, output_dir: Path):
    quiet = ["+trainer.enable_progress_bar=false"] if config_name == "train" else []
    cfg = compose_config(config_name, *overrides, *quiet, output_dir=output_dir)
    return task(cfg)


@pytest.fixture(scope="module")
def trained(photo_tree: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A class-folder run at augmentation.resolution=32 (the default crop fraction: resize 37)."""
    from litvision.tasks.train import train

    run_dir = tmp_path_factory.mktemp("trained")
    metrics = in_process(
        train,
        "train",
        *TINY,
        "dataset=class_folder",
        f"dataset.data_dir={photo_tree}",
        "augmentation.resolution=32",
        "trainer.max_epochs=1",
        "logger=none",
        "callbacks=[model_checkpoint,metrics_summary]",
        output_dir=run_dir,
    )
    return run_dir / "checkpoints" / "last.ckpt", metrics


# ---- the record ------------------------------------------------------------------------------
def test_every_checkpoint_records_the_eval_preprocessing_it_was_trained_with(trained) -> None:
    ckpt, _ = trained
    stored = torch.load(ckpt, map_location="cpu", weights_only=True)["hyper_parameters"]["preprocessing"]
    assert Preprocessing.from_dict(stored, "test") == TRAINED


def test_a_record_is_data_checked_field_by_field() -> None:
    record = TRAINED.to_dict()
    assert Preprocessing.from_dict(record, "f") == TRAINED
    for bad, match in [
        ({**record, "_target_": "os.system"}, "unknown fields"),
        ({**record, "mean": "0.5"}, "not a list of numbers"),
        ({**record, "resize": 3.5}, "not a whole number"),
        ({**record, "interpolation": "sinc"}, "expected one of"),
        ({**record, "std": [0, 1, 1]}, "must be positive"),
    ]:
        with pytest.raises(DataError, match=match):
            Preprocessing.from_dict(bad, "ckpt_path=x.ckpt")
    # a _target_ in a checkpoint's preprocessing record is refused before anything is built
    with pytest.raises(DataError, match="holds _target_"):
        check_checkpoint_targets({"preprocessing": {**record, "_target_": "os.system"}}, "ckpt_path=x.ckpt")


def test_record_to_transforms_and_back() -> None:
    transform, normalize = eval_transform(TRAINED), batch_normalize(TRAINED)
    assert describe(transform, normalize, resolution=32) == (TRAINED, "")
    image = np.random.default_rng(1).integers(0, 255, (60, 45, 3), dtype=np.uint8)
    by_hand = A.Compose([A.SmallestMaxSize(max_size=37), A.CenterCrop(32, 32)])(image=image)["image"]
    assert np.array_equal(transform(image=image)["image"], by_hand)
    record, why = describe(A.Compose([A.RandomCrop(32, 32)]), normalize)
    assert record is None and "RandomCrop" in why
    assert describe(None, normalize)[0] == Preprocessing(IMAGENET_MEAN, IMAGENET_STD)  # CIFAR: as they are


# ---- weights -> the run's augmentation ---------------------------------------------------------
def test_torchvision_weights_set_resolution_resize_and_normalisation_unless_overridden(caplog) -> None:
    weights = "model.backbone.weights=torchvision:ResNet50_Weights.IMAGENET1K_V2"
    cfg = compose_config("train", "dataset=class_folder", "dataset.data_dir=/x", "model=resnet50", weights)
    assert apply_weights_preprocessing(cfg).resize == 232
    aug = OmegaConf.to_container(cfg.augmentation, resolve=True)
    assert (aug["resolution"], aug["eval_resize"], aug["interpolation"]) == (224, 232, 1)
    assert aug["normalize"]["mean"] == pytest.approx(IMAGENET_MEAN) and aug["eval"]["transforms"][0]["max_size"] == 232
    v1 = compose_config(
        "train", "dataset=class_folder", "dataset.data_dir=/x", "model=resnet50", weights.replace("V2", "V1")
    )
    apply_weights_preprocessing(v1)
    assert v1.augmentation.eval_resize == 256
    # the command line (or a preset) wins; a warning names what differs from the weights
    mine = compose_config(
        "train", "dataset=class_folder", "dataset.data_dir=/x", "model=resnet50", weights, "augmentation.resolution=160"
    )
    with caplog.at_level(logging.WARNING, logger="litvision"):
        apply_weights_preprocessing(mine)
    assert mine.augmentation.resolution == 160 and mine.augmentation.eval_resize == round(160 * 232 / 224)
    assert "augmentation.resolution=160" in caplog.text and "train at 224" in caplog.text
    # CIFAR-style augmentation: the weights' normalisation, and a warning that nothing resizes to 224
    caplog.clear()
    cifar = compose_config("train", "model=resnet50", weights)
    with caplog.at_level(logging.WARNING, logger="litvision"):
        apply_weights_preprocessing(cifar)
    assert list(cifar.augmentation.normalize.mean) == pytest.approx(IMAGENET_MEAN)
    assert "no resolution" in caplog.text
    plain = compose_config("train")  # no weights: CIFAR-10's statistics as before
    assert apply_weights_preprocessing(plain) is None
    assert list(plain.augmentation.normalize.mean) == pytest.approx([0.4914, 0.4822, 0.4465])


def test_an_exported_model_carries_its_preprocessing_into_the_next_run(trained, photo_tree, tmp_path) -> None:
    """best.ckpt -> .safetensors (with the record) -> a new run at the default augmentation (224 px) trains at
    32 px / resize 37 instead, and its checkpoints record that."""
    from litvision.tasks.train import train

    ckpt, _ = trained
    exported = export_backbone(ckpt, tmp_path / "start.safetensors", layout="litvision")
    in_process(
        train,
        "train",
        *TINY,
        "dataset=class_folder",
        f"dataset.data_dir={photo_tree}",
        f"model.backbone.weights={exported}",
        "trainer.max_epochs=1",
        "test=false",
        "logger=none",
        "callbacks=[model_checkpoint,metrics_summary]",
        output_dir=tmp_path / "run",
    )
    stored = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)["hyper_parameters"]
    assert Preprocessing.from_dict(stored["preprocessing"], "test") == TRAINED
    assert stored["backbone"]["weights"] == str(exported)


# ---- checkpoint -> eval.py / predict.py ----------------------------------------------------------
def test_eval_applies_the_checkpoints_preprocessing(trained, photo_tree, tmp_path) -> None:
    """The same test metrics as the training run's own test, without restating augmentation=...
    (eval.yaml's class_folder default would resize to 256 and crop 224)."""
    from litvision.tasks.evaluate import evaluate

    ckpt, train_metrics = trained
    metrics = in_process(
        evaluate,
        "eval",
        "dataset=class_folder",
        f"dataset.data_dir={photo_tree}",
        "dataset.num_workers=0",
        f"ckpt_path={ckpt}",
        output_dir=tmp_path,
    )
    assert metrics["test/loss"] == pytest.approx(train_metrics["test/loss"], rel=1e-5)
    assert metrics["test/acc_top1"] == train_metrics["test/acc_top1"]


def test_predict_images_applies_the_checkpoints_preprocessing(trained, photo_tree, tmp_path) -> None:
    from litvision.tasks.predict import predict

    ckpt, _ = trained
    summary = in_process(
        predict,
        "predict",
        f"ckpt_path={ckpt}",
        f"images={photo_tree / 'val'}",
        "dataset.num_workers=0",
        f"callbacks.prediction_writer.output_dir={tmp_path}",
        output_dir=tmp_path,
    )
    probabilities = np.load(summary["probabilities"])
    model = load_classifier(ckpt).eval()
    transform, normalize = eval_transform(TRAINED), batch_normalize(TRAINED)
    files = sorted((photo_tree / "val").rglob("*.png"))
    images = [transform(image=np.asarray(Image.open(f).convert("RGB")))["image"] for f in files]
    batch = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
    with torch.no_grad():
        expected = model(normalize(batch)).softmax(dim=1).numpy()
    assert probabilities == pytest.approx(expected, abs=1e-5)


def test_augmentation_on_the_command_line_replaces_the_checkpoints_with_a_warning(trained, photo_tree, tmp_path):
    ckpt, _ = trained
    proc = run_script(
        "predict.py",
        f"ckpt_path={ckpt}",
        f"images={photo_tree / 'val'}",
        "augmentation=imagenet",
        "augmentation.resolution=48",
        "dataset.num_workers=0",
        f"hydra.run.dir={tmp_path}",
    )
    out = proc.stdout + proc.stderr
    assert "augmentation=imagenet augmentation.resolution=48 on the command line: using it" in out
    assert "resolution 48 vs 32" in out and (tmp_path / "predictions.csv").is_file()


def test_a_resume_does_not_need_the_weight_file(photo_tree, tmp_path) -> None:
    """Weights come from the checkpoint when resuming: the source file may be gone."""
    from litvision.lightning_modules.backbones import build_backbone
    from litvision.tasks.train import train

    source = tmp_path / "start.pth"
    torch.save(build_backbone("small_cnn", num_classes=2, width=4).state_dict(), source)
    common = [
        *TINY,
        "dataset=class_folder",
        f"dataset.data_dir={photo_tree}",
        "augmentation.resolution=32",
        f"model.backbone.weights={source}",
        "ckpt_path=last",
        "test=false",
        "logger=none",
        "callbacks=[model_checkpoint,metrics_summary]",
    ]
    in_process(train, "train", *common, "trainer.max_epochs=1", output_dir=tmp_path / "run")
    source.unlink()
    metrics = in_process(train, "train", *common, "trainer.max_epochs=2", output_dir=tmp_path / "run")
    assert metrics["epoch"] == 1
    assert read_metrics(tmp_path / "run")["epoch"] == 1
