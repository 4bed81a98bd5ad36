"""Robust, reduced-size-aware decoding (datamodules/readers/decode.py, datamodules/readers/jpeg_pipeline.py)."""

from __future__ import annotations

import io
import logging

import albumentations as A
import numpy as np
import pytest
import torch
from PIL import Image

from litvision.datamodules.datasets.file_dataset import FileListDataset
from litvision.datamodules.readers.decode import (
    BadImageError,
    BadImageLog,
    decode_image,
    jpeg_header,
    largest_reduction,
)
from litvision.datamodules.readers.jpeg_pipeline import SamplePipeline
from litvision.datamodules.transforms.pipeline import reseed_transform
from tests.helpers.imagenet_trees import SAMPLES, bad_image_bytes, real_samples


def jpeg_bytes(height: int, width: int, mode: str = "RGB", progressive: bool = False, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    # smooth content, so that reduced-size decoding is comparable with a resized full decode
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack([x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1), (x + y) % 256], -1)
    pixels = np.clip(pixels + rng.normal(0, 2, pixels.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buf, "JPEG", quality=92, progressive=progressive)
    return buf.getvalue()


def eval_pipeline(size: int = 224, resize: int = 256) -> A.Compose:
    return A.Compose([A.SmallestMaxSize(max_size=resize), A.CenterCrop(height=size, width=size)])


def train_pipeline(size: int = 224) -> A.Compose:
    return A.Compose([A.RandomResizedCrop(size=(size, size)), A.HorizontalFlip(p=0.5)])


def test_header_matches_pil_on_the_real_samples():
    samples = real_samples()
    for _, path in samples:
        data = path.read_bytes()
        header = jpeg_header(data)
        with Image.open(path) as im:
            assert header is not None and (header.width, header.height) == im.size, path
            assert header.components == len(im.getbands()), path


@pytest.mark.parametrize("mode, progressive", [("RGB", False), ("RGB", True), ("L", False), ("CMYK", False)])
def test_header_of_generated_jpegs(mode, progressive):
    header = jpeg_header(jpeg_bytes(37, 53, mode, progressive))
    assert (header.height, header.width) == (37, 53)
    assert header.components == {"RGB": 3, "L": 1, "CMYK": 4}[mode]


def test_header_of_non_jpeg_is_none():
    files = bad_image_bytes()
    assert jpeg_header(files["png"]) is None
    assert jpeg_header(files["empty"]) is None
    assert jpeg_header(b"\xff\xd8garbage") is None


def test_awkward_files_decode_to_rgb_like_pillow():
    files = bad_image_bytes()
    for name in ("cmyk", "grayscale", "png"):
        image = decode_image(files[name])
        reference = np.asarray(Image.open(io.BytesIO(files[name])).convert("RGB")).astype(int)
        assert image.shape == (300, 400, 3) and image.dtype == np.uint8, name
        # libjpeg-turbo vs Pillow's colour conversion: within a few levels on average
        assert np.abs(image.astype(int) - reference).mean() < 2.0, name
    gray = decode_image(files["grayscale"])
    assert np.array_equal(gray[..., 0], gray[..., 1]) and np.array_equal(gray[..., 1], gray[..., 2])


@pytest.mark.parametrize("name, reason", [("truncated", "truncated"), ("empty", "empty")])
def test_broken_files_raise_bad_image_error(name, reason):
    with pytest.raises(BadImageError, match=reason):
        decode_image(bad_image_bytes()[name])
    with pytest.raises(BadImageError):
        decode_image(b"not an image at all" * 10)


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_reduced_decode_size_and_content(factor):
    data = jpeg_bytes(301, 403)
    reduced = decode_image(data, factor)
    assert reduced.shape == (-(-301 // factor), -(-403 // factor), 3)  # libjpeg rounds up
    full = decode_image(data)
    import cv2

    resized = cv2.resize(full, (reduced.shape[1], reduced.shape[0]), interpolation=cv2.INTER_AREA)
    assert np.abs(resized.astype(int) - reduced.astype(int)).mean() < 4


def test_largest_reduction_never_goes_below_the_target():
    rng = np.random.default_rng(0)
    for _ in range(2000):
        h, w, th, tw = rng.integers(1, 3000, 4)
        f = largest_reduction(h, w, th, tw)
        assert f in (1, 2, 4, 8)
        if f > 1:
            assert h // f >= th and w // f >= tw
        if f < 8:  # the next larger factor would have gone below the target
            assert h // (f * 2) < th or w // (f * 2) < tw


def test_eval_pipeline_reduces_large_jpegs_without_changing_the_output():
    data = jpeg_bytes(1200, 1600)  # shorter side 1200 >= 4 * 256: decoded at 1/4
    pipeline = SamplePipeline(eval_pipeline())
    assert pipeline.mode == "resize_first"
    ours = pipeline(data)
    reference = eval_pipeline()(image=decode_image(data))["image"]
    assert ours.shape == reference.shape == (224, 224, 3)
    assert np.abs(ours.astype(int) - reference.astype(int)).mean() < 4


def test_random_resized_crop_plan_keeps_the_crop_at_least_the_output_size(monkeypatch):
    import litvision.datamodules.readers.jpeg_pipeline as jp

    calls = []
    real_decode = jp.decode_image

    def spy(data, reduction=1, header=None, *budget):
        image = real_decode(data, reduction, header, *budget)
        calls.append((reduction, image.shape))
        return image

    monkeypatch.setattr(jp, "decode_image", spy)
    data = jpeg_bytes(1500, 2000)
    pipeline = SamplePipeline(train_pipeline())
    assert pipeline.mode == "random_resized_crop"
    rrc = pipeline.first
    sampled = []
    real_params = rrc.get_params_dependent_on_data

    def record(params, data_):
        out = real_params(params, data_)
        sampled.append(out["crop_coords"])
        return out

    monkeypatch.setattr(rrc, "get_params_dependent_on_data", record)
    for _ in range(200):
        assert pipeline(data).shape == (224, 224, 3)
    factors = [f for f, _ in calls]
    assert max(factors) > 1, "large crops of a large JPEG should be decoded at reduced size"
    for (x0, y0, x1, y1), factor in zip(sampled, factors, strict=True):
        assert (x1 - x0) // factor >= 224 and (y1 - y0) // factor >= 224


def pattern_jpeg_bytes(height: int, width: int, period: int) -> bytes:
    """Sine stripes (horizontal, vertical, diagonal per channel) of ``period`` px: smooth enough
    that a reduced-size decode matches a resized full decode, yet a crop moved by a few pixels
    changes every output pixel (on a plain gradient an 8 px shift changes the mean by ~1 level)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    channels = [
        np.sin(2 * np.pi * x / period),
        np.sin(2 * np.pi * y / period),
        np.sin(2 * np.pi * (x + y) / (1.5 * period)),
    ]
    pixels = np.clip(128 + 100 * np.stack(channels, -1), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=92)
    return buf.getvalue()


def test_random_resized_crop_plan_matches_albumentations_on_the_same_crop():
    """Same crop box and interpolation: our reduced path vs Albumentations on the full image.

    The reduced decode maps the box onto the 1/f grid (rounding by up to f/2 full-size pixels),
    which costs at most ~5.5 levels on average on this pattern; a box off by 8 px in x or y costs
    13 or more (measured: 24-31 in x, 13-24 in y), so the bound 8 catches it.
    """
    data = pattern_jpeg_bytes(1000, 1400, period=64)
    full = decode_image(data)
    pipeline = SamplePipeline(A.Compose([A.RandomResizedCrop(size=(224, 224), scale=(0.9, 1.0))]))
    reference = A.Compose([A.RandomResizedCrop(size=(224, 224), scale=(0.9, 1.0))])
    reseed_transform(pipeline.transform, 7)
    reseed_transform(reference, 7)
    for _ in range(8):
        ours, theirs = pipeline(data), reference(image=full)["image"]
        assert np.abs(ours.astype(int) - theirs.astype(int)).mean() < 8


def test_reseeded_children_draw_independent_streams():
    compose = A.Compose([A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5)])
    reseed_transform(compose, 3)
    a = [compose.transforms[0].py_random.random() for _ in range(5)]
    b = [compose.transforms[1].py_random.random() for _ in range(5)]
    assert a != b
    reseed_transform(compose, 3)
    assert [compose.transforms[0].py_random.random() for _ in range(5)] == a


def write_awkward_folder(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    names = []
    for name, data in bad_image_bytes().items():
        (folder / f"{name}.JPEG").write_bytes(data)
        names.append(f"{name}.JPEG")
    return folder, names


def test_dataset_skips_bad_files_and_logs_each_once(tmp_path, caplog):
    folder, names = write_awkward_folder(tmp_path)
    targets = list(range(len(names)))
    train = FileListDataset(folder, names, targets, train_pipeline())
    evaluation = FileListDataset(folder, names, targets, eval_pipeline()).for_evaluation()
    with caplog.at_level(logging.WARNING):
        for _ in range(2):  # second epoch: no new warnings, no second decode attempt
            items = [evaluation[i] for i in range(len(names))]
            train_items = [train[i] for i in range(len(names))]
    kept = [(name, item) for name, item in zip(names, items, strict=True) if item is not None]
    assert sorted(n for n, _ in kept) == ["cmyk.JPEG", "grayscale.JPEG", "png.JPEG"]
    for _, (image, _) in kept:
        assert image.shape == (3, 224, 224)
    assert all(image.shape == (3, 224, 224) for image, _ in train_items)  # replaced, never None
    assert evaluation.bad_images.count() == 2 and train.bad_images.count() == 2
    warned = [r.getMessage() for r in caplog.records if "unreadable" in r.getMessage()]
    assert len(warned) == 4  # truncated + empty, once per file per dataset
    batch = FileListDataset.collate_fn(items)
    assert batch[0].shape == (3, 3, 224, 224) and batch[1].tolist() == [0, 1, 2]


def test_dataset_raise_policy_names_the_file(tmp_path):
    folder, names = write_awkward_folder(tmp_path)
    dataset = FileListDataset(folder, names, list(range(len(names))), eval_pipeline(), on_bad_image="raise")
    with pytest.raises(BadImageError, match="truncated.JPEG"):
        for i in range(len(names)):
            dataset[i]


def test_bad_image_log_rejects_unknown_policy():
    with pytest.raises(ValueError, match="on_bad_image"):
        BadImageLog(3, "ignore")


def test_samples_folder_location_is_the_documented_one():
    assert SAMPLES.name == "imagenet-samples" and SAMPLES.parent.name == "data"


def test_batches_keep_the_decoded_channels_last_layout():
    from litvision.datamodules.datasets.array_dataset import image_to_tensor
    from litvision.datamodules.datasets.file_dataset import collate_skipping_bad

    rng = np.random.default_rng(0)
    hwc = [rng.integers(0, 255, (6, 5, 3), dtype=np.uint8) for _ in range(4)]
    images, labels = collate_skipping_bad([(image_to_tensor(a), k) for k, a in enumerate(hwc)] + [None])
    assert images.shape == (4, 3, 6, 5) and images.is_contiguous(memory_format=torch.channels_last)
    assert np.array_equal(images.numpy(), np.stack(hwc).transpose(0, 3, 1, 2))
    assert labels.tolist() == [0, 1, 2, 3]
    planar = [torch.from_numpy(a.transpose(2, 0, 1).copy()) for a in hwc]  # e.g. from ToTensorV2
    images, _ = collate_skipping_bad([(t, 0) for t in planar])
    assert images.is_contiguous() and np.array_equal(images.numpy(), np.stack(hwc).transpose(0, 3, 1, 2))


def test_fast_flip_is_albumentations_flip():
    """The random-resized-crop path applies HorizontalFlip itself: same draws, same pixels
    (a 300x400 image never allows a reduced decode for 224 crops, so the pixels match exactly)."""
    data = jpeg_bytes(300, 400)
    ours = SamplePipeline(A.Compose([A.RandomResizedCrop(size=(224, 224)), A.HorizontalFlip(p=0.5)]))
    reference = A.Compose([A.RandomResizedCrop(size=(224, 224)), A.HorizontalFlip(p=0.5)])
    reseed_transform(ours.transform, 11)
    reseed_transform(reference, 11)
    full = decode_image(data)
    for _ in range(20):
        assert np.array_equal(ours(data), reference(image=full)["image"])
