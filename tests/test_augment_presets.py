"""RandAugment / TrivialAugment-Wide presets: they build, change images, follow the papers' op
definitions and magnitude draws, and are reproducible from a seed."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import albumentations as A
import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from litvision.datamodules.transforms.augment_presets import RandAugment, TrivialAugmentWide, apply_op, sharpness
from litvision.datamodules.transforms.pipeline import reseed_transform
from litvision.utils.errors import ConfigError

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
PRESETS = ["cifar_trivialaugment", "cifar_randaugment", "imagenet_trivialaugment", "imagenet_randaugment"]


def augmentation(preset: str, *overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=[f"augmentation={preset}", *overrides]).augmentation


def images(n: int, size: int = 32, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    # smooth-ish images (a gradient plus noise) so that geometric ops visibly move content
    base = np.linspace(0, 255, size, dtype=np.float32)[None, :, None] * np.ones((size, 1, 3), np.float32)
    return [np.clip(base + rng.normal(0, 40, (size, size, 3)), 0, 255).astype(np.uint8) for _ in range(n)]


def policy_of(pipeline: A.Compose):
    (policy,) = [t for t in pipeline.transforms if isinstance(t, (RandAugment, TrivialAugmentWide))]
    return policy


@pytest.mark.parametrize("preset", PRESETS)
def test_presets_build_change_images_and_reproduce_from_a_seed(preset: str) -> None:
    cfg = augmentation(preset, "augmentation.train_resolution=48" if preset.startswith("imagenet") else "seed=0")
    pipeline = instantiate(cfg.train)
    size = 48 if preset.startswith("imagenet") else 32
    inputs = images(24, size=64 if preset.startswith("imagenet") else 32)

    def run(seed: int) -> list[np.ndarray]:
        reseed_transform(pipeline, seed)
        return [pipeline(image=image)["image"] for image in inputs]

    first, again, other = run(7), run(7), run(8)
    assert all(out.shape == (size, size, 3) and out.dtype == np.uint8 for out in first)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True)), "same seed must give the same images"
    assert sum(not np.array_equal(a, b) for a, b in zip(first, other, strict=True)) >= 20

    # the policy itself changes (nearly) every image: only Identity, or a no-op draw, keeps one
    policy = policy_of(pipeline)
    policy.set_random_seed(0)
    crops = images(60, size=size, seed=1)
    changed = sum(not np.array_equal(policy(image=img)["image"], img) for img in crops)
    assert changed >= 48, f"{preset}: only {changed}/60 images changed"
    assert isinstance(pipeline.transforms[-1], A.Erasing) and pipeline.transforms[-1].p == 0.0


def test_trivialaugment_draws_one_uniform_op_at_a_uniform_bin() -> None:
    policy = policy_of(instantiate(augmentation("cifar_trivialaugment").train))
    policy.set_random_seed(0)
    draws = [policy.get_params()["ops"] for _ in range(7000)]
    assert all(len(ops) == 1 for ops in draws)
    counts = Counter(name for ((name, _),) in draws)
    assert set(counts) == set(policy.ops) and len(counts) == 14
    assert min(counts.values()) > 400 and max(counts.values()) < 600  # 500 expected each
    rotations = np.array([value for ((name, value),) in draws if name == "Rotate"])
    bins = np.round(np.abs(rotations) / 135 * 30, 6)
    assert np.allclose(bins, np.round(bins))  # magnitudes on the 31-bin grid of [0, 135]
    assert len(set(np.abs(rotations).round(6))) > 25 and (rotations < 0).any() and (rotations > 0).any()
    posterize = {value for ((name, value),) in draws if name == "Posterize"}
    assert min(posterize) == 0 and max(posterize) == 6  # keep 8..2 bits (unsigned)


def test_randaugment_draws_n_ops_with_replacement_at_the_fixed_magnitude() -> None:
    cfg = augmentation("cifar_randaugment", "augmentation.num_ops=3", "augmentation.magnitude=12")
    policy = policy_of(instantiate(cfg.train))
    policy.set_random_seed(0)
    draws = [policy.get_params()["ops"] for _ in range(3000)]
    assert all(len(ops) == 3 for ops in draws)
    assert any(len({name for name, _ in ops}) < 3 for ops in draws)  # with replacement
    for ops in draws:
        for name, value in ops:
            assert abs(value) == pytest.approx(policy.ops[name] * 12 / 30)
    signs = {np.sign(value) for ops in draws for name, value in ops if name == "Rotate"}
    assert signs == {-1.0, 1.0}


def test_ops_follow_the_torchvision_definitions() -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (9, 9, 3), dtype=np.uint8)
    # rotation is counter-clockwise about the centre: 90 degrees on an odd square is rot90
    assert np.array_equal(apply_op(img, "Rotate", 90.0), np.rot90(img, 1))
    # translation in pixels (and in image widths), uncovered pixels get the fill
    moved = apply_op(img, "TranslateX", 3.0, fill=7)
    assert np.array_equal(moved[:, 3:], img[:, :-3]) and (moved[:, :3] == 7).all()
    assert np.array_equal(
        apply_op(img, "TranslateY", -2 / 9, translate_unit="fraction"),
        np.concatenate([img[2:], np.zeros((2, 9, 3), np.uint8)]),
    )
    # shear about the top-left corner: output (x, y) takes input (x + v*y, y)
    sheared = apply_op(img, "ShearX", 1.0)
    for y in range(9):
        assert np.array_equal(sheared[y, : 9 - y], img[y, y:])
    assert np.array_equal(
        apply_op(img, "Brightness", 0.5), np.clip(np.floor(img * 1.5), 0, 255).astype(np.uint8)
    )  # truncated, as torchvision
    assert np.array_equal(apply_op(img, "Posterize", 3.0), img & 0b11111000)  # keep 8 - 3 = 5 bits
    assert np.array_equal(apply_op(img, "Solarize", 55.0), np.where(img >= 200, 255 - img, img))
    assert np.array_equal(apply_op(img, "Identity", 0.0), img)
    # PIL's Sharpness: factor 0 = the SMOOTH-filtered image with its border kept, factor 1 = identity
    smooth = sharpness(img, 0.0)
    assert np.array_equal(smooth[0], img[0]) and np.array_equal(smooth[:, -1], img[:, -1])
    kernel = np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]]) / 13
    expected = np.round((img[3:6, 3:6, 0] * kernel).sum())
    assert smooth[4, 4, 0] == expected
    assert np.array_equal(sharpness(img, 1.0), img)


def test_random_erasing_is_an_option_filled_with_the_mean_colour() -> None:
    cfg = augmentation("cifar_standard", "augmentation.random_erasing=1.0")
    pipeline = instantiate(cfg.train)
    reseed_transform(pipeline, 0)
    white = np.full((32, 32, 3), 255, np.uint8)
    out = pipeline(image=white)["image"]
    erased = (out != 255).any(axis=2)
    assert 0.02 * 1024 * 0.5 <= erased.sum() <= 0.33 * 1024
    assert np.array_equal(out[erased][0], np.array([125, 122, 113]))  # mean * 255, truncated


def test_bad_policy_configs_are_refused() -> None:
    with pytest.raises(ConfigError, match="unknown"):
        TrivialAugmentWide({"Invert": 0})
    with pytest.raises(ConfigError, match="magnitude"):
        RandAugment({"Rotate": 30}, magnitude=31)
