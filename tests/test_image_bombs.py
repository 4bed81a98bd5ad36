"""Decompression bombs (issue 17 item 4): refused from the header, before any pixel is allocated,
with one verdict on every path that decodes: training, evaluation, predict.py images=, the audit's
health scan, prepare_shards.py and shards read back.

The bombs are built in the test (tests/helpers/bombs.py): a 30000x30000 PNG (~880 KB), an 8x8 JPEG whose
header claims 30000x30000 (~630 bytes), and an honest 200000x1 PNG whose eval resize would ask for
39 GB. The end-to-end runs measure their peak RSS (under 2 GB; each bomb decoded is 2.7 GB or more).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import albumentations as A
import numpy as np
import pytest
from PIL import Image

from litvision.data_audit.scan import OVERSIZED, inspect_file
from litvision.datamodules.datasets.file_dataset import FileListDataset
from litvision.datamodules.prediction import require_one_size
from litvision.datamodules.readers.decode import (
    DEFAULT_MAX_IMAGE_PIXELS,
    MAX_ASPECT_RATIO,
    BadImageError,
    ImageTooLargeError,
    check_image_size,
    decode_image,
)
from litvision.datamodules.readers.jpeg_pipeline import SamplePipeline
from litvision.datamodules.shards.writer import unreadable_reason
from litvision.utils.errors import ConfigError
from tests.helpers.bombs import jpeg_bomb, png_bomb, wide_png
from tests.helpers.run_helpers import TINY_MODEL, run_script_peak_rss

MAX_RSS = 2 * 1024**3  # bytes; a single decode of any bomb here is >= 2.7 GB


@pytest.fixture(scope="module")
def bombs() -> dict[str, bytes]:
    return {"png_bomb.png": png_bomb(), "jpeg_bomb.jpg": jpeg_bomb(), "wide.png": wide_png()}


def honest_png(path: Path, seed: int, size: tuple[int, int] = (40, 48)) -> None:
    pixels = np.random.default_rng(seed).integers(0, 255, (*size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


PIPELINES = {
    "none": None,
    "random_resized_crop": A.Compose([A.RandomResizedCrop(size=(32, 32)), A.HorizontalFlip(p=0.5)]),
    "resize_first": A.Compose([A.SmallestMaxSize(max_size=36), A.CenterCrop(height=32, width=32)]),
    "other": A.Compose([A.HorizontalFlip(p=1.0), A.Resize(32, 32)]),
}


# ---- the one verdict -----------------------------------------------------------------------


def test_the_bombs_are_small_files_claiming_huge_images(bombs):
    assert len(bombs["png_bomb.png"]) < 1_000_000 and len(bombs["jpeg_bomb.jpg"]) < 1_000
    with pytest.raises(
        ImageTooLargeError, match=r"30000x30000 = 900,000,000 pixels.*dataset.max_image_pixels=89478485"
    ):
        check_image_size(bombs["png_bomb.png"])
    with pytest.raises(ImageTooLargeError, match=r"30000x30000 = 900,000,000 pixels"):
        check_image_size(bombs["jpeg_bomb.jpg"])
    with pytest.raises(ImageTooLargeError, match=rf"200000x1 pixels: sides more than {MAX_ASPECT_RATIO} to 1"):
        check_image_size(bombs["wide.png"])


def test_the_budget_is_configurable_and_the_aspect_bound_is_100_to_1():
    big = png_bomb(3000, 3000)  # 9M pixels: within the default budget
    assert check_image_size(big) == (3000, 3000)
    with pytest.raises(ImageTooLargeError, match="dataset.max_image_pixels=1000000"):
        check_image_size(big, max_pixels=1_000_000)
    assert check_image_size(png_bomb(30000, 30000), max_pixels=None) == (30000, 30000)  # null: no budget
    assert check_image_size(wide_png(100, 1), max_pixels=None) == (100, 1)
    with pytest.raises(ImageTooLargeError, match="sides more than 100 to 1"):
        check_image_size(wide_png(1, 101), max_pixels=None)  # the aspect bound stays
    assert DEFAULT_MAX_IMAGE_PIXELS == Image.MAX_IMAGE_PIXELS  # Pillow's own threshold


def test_a_file_without_a_readable_size_is_a_bad_image():
    with pytest.raises(BadImageError, match="cannot decode"):
        check_image_size(b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 30000 +X 30000\n")  # OpenCV decodes HDR
    with pytest.raises(BadImageError, match="cannot decode"):
        decode_image(b"not an image at all" * 10)


@pytest.mark.parametrize("pipeline", list(PIPELINES))
def test_every_training_and_eval_pipeline_refuses_the_bombs(bombs, pipeline):
    for _name, data in bombs.items():
        with pytest.raises(ImageTooLargeError):
            SamplePipeline(PIPELINES[pipeline])(data)
    with pytest.raises(ImageTooLargeError):
        decode_image(bombs["jpeg_bomb.jpg"], reduction=8)  # the reduced DCT decode too


def test_a_configured_budget_reaches_the_decode():
    data = png_bomb(1000, 1000)
    assert SamplePipeline(PIPELINES["resize_first"])(data).shape == (32, 32, 3)
    with pytest.raises(ImageTooLargeError, match="max_image_pixels=999999"):
        SamplePipeline(PIPELINES["resize_first"], max_pixels=999_999)(data)


def test_datasets_skip_the_bombs_and_log_their_paths(bombs, tmp_path, caplog):
    for name, data in bombs.items():
        (tmp_path / name).write_bytes(data)
    honest_png(tmp_path / "ok.png", 0)
    names = [*bombs, "ok.png"]
    dataset = FileListDataset(tmp_path, names, [0, 1, 0, 1], PIPELINES["resize_first"]).for_evaluation()
    with caplog.at_level(logging.WARNING):
        items = [dataset[i] for i in range(len(names))]
    assert [item is None for item in items] == [True, True, True, False]
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert all(str(tmp_path / name) in warned for name in bombs)
    training = FileListDataset(tmp_path, names, [0, 1, 0, 1], PIPELINES["random_resized_crop"])
    assert all(training[i][0].shape == (3, 32, 32) for i in range(len(names)))  # replaced by the readable one
    strict = FileListDataset(tmp_path, names, [0, 1, 0, 1], None, on_bad_image="raise")
    with pytest.raises(BadImageError, match=r"png_bomb.png: the header claims 30000x30000"):
        strict[0]


def test_the_audit_prepare_shards_and_predict_reach_the_same_verdict(bombs, tmp_path):
    for name, data in bombs.items():
        path = tmp_path / name
        path.write_bytes(data)
        width, height, _, issues, digest, _ = inspect_file(str(path).encode(), 16)
        assert (width, height, digest) == (0, 0, "") and [i for i, _ in issues] == [OVERSIZED], name
        for verify in ("decode", "header"):
            assert "the header claims" in unreadable_reason(data, verify), (name, verify)
    honest_png(tmp_path / "ok.png", 0)
    require_one_size(tmp_path, [*bombs, "ok.png"])  # the bombs have no size to compare: no "different sizes"


def test_an_invalid_budget_is_a_config_error(tmp_path):
    from litvision.datamodules.class_folder import ClassFolderDataModule

    with pytest.raises(ConfigError, match="dataset.max_image_pixels=-5"):
        ClassFolderDataModule(str(tmp_path), "val", "val", max_image_pixels=-5)


# ---- end to end: each entry script skips the bombs, logs their paths, stays under 2 GB --------


@pytest.fixture(scope="module")
def bomb_tree(bombs, tmp_path_factory) -> Path:
    """class folders train/{a,b}, val/{a,b}: a few honest PNGs, and every bomb in train/a and val/b."""
    root = tmp_path_factory.mktemp("bomb_tree")
    for split in ("train", "val"):
        for k, cls in enumerate("ab"):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(4 if split == "train" else 2):
                honest_png(folder / f"{i}.png", seed=100 * k + i)
        target = root / split / ("a" if split == "train" else "b")
        for name, data in bombs.items():
            (target / name).write_bytes(data)
    return root


def bomb_ids(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.glob("*/*/*") if "bomb" in p.name or p.name == "wide.png"}


def assert_logged_and_small(proc, peak: int, root: Path, ids: set[str]) -> None:
    out = proc.stdout + proc.stderr
    missing = [i for i in ids if str(root / i) not in out and i not in out]
    assert not missing, (missing, out[-3000:])
    assert "the header claims" in out
    assert peak < MAX_RSS, f"peak RSS {peak / 2**30:.2f} GB"


TRAIN = ["augmentation.resolution=32", *TINY_MODEL, "dataset.batch_size=4", "dataset.progress=false", "logger=none"]


@pytest.fixture(scope="module")
def trained(bomb_tree, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("bomb_train")
    proc, peak = run_script_peak_rss(
        "train.py",
        "dataset=class_folder",
        f"dataset.data_dir={bomb_tree}",
        *TRAIN,
        "dataset.num_workers=1",
        "trainer.max_epochs=1",
        f"hydra.run.dir={run_dir}",
    )
    return run_dir, proc, peak


@pytest.mark.slow  # ~35 s: a train.py run
def test_train_skips_the_bombs(trained, bomb_tree):
    run_dir, proc, peak = trained
    assert_logged_and_small(proc, peak, bomb_tree, bomb_ids(bomb_tree))
    assert "test/acc_top1" in json.loads((run_dir / "metrics.json").read_text())  # the run went on to the end
    log = (run_dir / "train.log").read_text()
    assert "train: 3 unreadable image(s) skipped" in log and "val: 3 unreadable image(s) skipped" in log


@pytest.mark.slow  # ~35 s: predict.py after the train.py run
def test_predict_images_folder_skips_the_bombs(trained, bombs, tmp_path):
    run_dir, _, _ = trained
    folder = tmp_path / "photos"
    (folder / "nested").mkdir(parents=True)
    for name, data in bombs.items():
        (folder / "nested" / name).write_bytes(data)
    for i in range(3):
        honest_png(folder / f"{i}.png", seed=i, size=(30 + i, 50))
    out = tmp_path / "out"
    proc, peak = run_script_peak_rss(
        "predict.py",
        f"ckpt_path={next((run_dir / 'checkpoints').glob('best*.ckpt'))}",
        f"images={folder}",
        "augmentation=imagenet",
        "augmentation.resolution=32",
        "dataset.num_workers=1",
        f"hydra.run.dir={out}",
    )
    assert_logged_and_small(proc, peak, folder, {f"nested/{name}" for name in bombs})
    rows = (out / "predictions.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["0.png", "1.png", "2.png"]


def test_audit_health_lists_the_bombs_as_oversized(bomb_tree, tmp_path):  # ~11 CPU s
    run_dir = tmp_path / "audit"
    proc, peak = run_script_peak_rss(
        "audit.py",
        "dataset=class_folder",
        f"dataset.data_dir={bomb_tree}",
        "dataset.progress=false",
        "audit.sections=[health]",
        "logger=none",
        f"hydra.run.dir={run_dir}",
    )
    assert peak < MAX_RSS, f"peak RSS {peak / 2**30:.2f} GB"
    rows = (run_dir / "audit" / "health.csv").read_text().splitlines()
    oversized = {row.split(",")[0] for row in rows if ",oversized," in row}
    assert oversized == bomb_ids(bomb_tree)
    assert all(f"`{i}`" in (run_dir / "audit" / "report.md").read_text() for i in oversized)


def test_prepare_shards_leaves_the_bombs_out_and_lists_them(bomb_tree, tmp_path):  # ~9 CPU s
    pytest.importorskip("webdataset")
    out = tmp_path / "shards"
    proc, peak = run_script_peak_rss(
        "prepare_shards.py",
        "dataset=class_folder",
        f"dataset.data_dir={bomb_tree}",
        "dataset.progress=false",
        f"out={out}",
        "workers=2",
        "samples_per_shard=3",
    )
    assert peak < MAX_RSS, f"peak RSS {peak / 2**30:.2f} GB"
    manifest = json.loads((out / "manifest.json").read_text())
    bad = {b["id"]: b["reason"] for split in manifest["splits"].values() for b in split["bad_files"]}
    assert set(bad) == bomb_ids(bomb_tree) and all("the header claims" in r for r in bad.values())
    assert manifest["splits"]["train"]["count"] == 8 and manifest["splits"]["val"]["count"] == 4


def test_shards_written_unchecked_skip_the_bombs_when_read(bomb_tree, tmp_path, caplog):
    pytest.importorskip("webdataset")
    from litvision.datamodules.class_folder import ClassFolderDataModule
    from litvision.datamodules.shard_datamodule import ShardDataModule
    from litvision.datamodules.shards.prepare import prepare

    out = tmp_path / "shards"
    files = ClassFolderDataModule(str(bomb_tree), "val", "val", progress=False)
    prepare(files, out, samples_per_shard=4, workers=1, verify="none")  # the bombs go into the shards
    shards = ShardDataModule(
        str(out),
        batch_size=4,
        num_workers=0,
        eval_transform=PIPELINES["resize_first"],
        train_transform=PIPELINES["random_resized_crop"],
        pin_memory=False,
        persistent_workers=False,
    )
    shards.setup("fit")
    with caplog.at_level(logging.WARNING):
        evaluated = sum(len(labels) for _, labels in shards.val_dataloader())
        trained = sum(len(labels) for _, labels in shards.train_dataloader())
    assert evaluated == 4 and trained == 8 + 3  # dropped in evaluation, replaced in training
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert all(i in warned for i in bomb_ids(bomb_tree)) and "the header claims" in warned
