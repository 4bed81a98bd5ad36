"""Batched device augmentation (datamodules/transforms/batch_augment.py) against independent references:
numpy's reflect padding and Albumentations' pad + crop + flip, one image at a time."""

from __future__ import annotations

import albumentations as A
import numpy as np
import pytest
import torch

from litvision.datamodules.transforms.batch_augment import (
    BatchAugment,
    cutout_,
    reflect_coordinates,
    reflect_pad,
    translated_views,
)


def _images(n: int = 6, size: int = 8, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8))


def _albumentations_view(image: np.ndarray, dy: int, dx: int, flip: bool, pad: int) -> np.ndarray:
    """The same view the per-image pipeline makes: reflect-101 pad, crop at (pad+dy, pad+dx), flip."""
    h, w = image.shape[:2]
    ops = [
        A.PadIfNeeded(h + 2 * pad, w + 2 * pad, border_mode=4),
        A.Crop(x_min=pad + dx, y_min=pad + dy, x_max=pad + dx + w, y_max=pad + dy + h),
    ]
    if flip:
        ops.append(A.HorizontalFlip(p=1.0))
    return A.Compose(ops)(image=image)["image"]


@pytest.mark.parametrize("size", [1, 2, 5, 32])
def test_reflect_coordinates_match_numpy_reflect_padding(size: int) -> None:
    pad = min(size - 1, 4) if size > 1 else 3
    coords = torch.arange(-pad, size + pad)
    expected = np.pad(np.arange(size), pad, mode="reflect") if size > 1 else np.zeros(size + 2 * pad, dtype=int)
    assert reflect_coordinates(coords, size).tolist() == expected.tolist()


@pytest.mark.parametrize("pad", [0, 2, 11])
def test_reflect_pad_equals_numpy_reflect_padding(pad: int) -> None:
    images = _images(n=3, size=8)
    expected = np.pad(images.numpy(), ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
    np.testing.assert_array_equal(reflect_pad(images, pad).numpy(), expected)


@pytest.mark.parametrize("flip", ["random", "none"])
def test_translate_flip_views_equal_albumentations_per_image(flip: str) -> None:
    images = _images(n=6, size=8)
    shifts = torch.tensor([[0, 0], [-2, 1], [2, -2], [1, 2], [-1, -1], [0, 2], [-2, -2], [2, 2]])
    indices = torch.tensor([0, 1, 2, 3, 4, 5, 5, 0])
    flips = torch.tensor([False, True, False, True, True, False, True, True]) if flip == "random" else None
    split = BatchAugment(translate=2, flip=flip).prepare(images)
    out = translated_views(split, indices, shifts, flips)
    assert out.shape == (8, 3, 8, 8) and out.is_contiguous(memory_format=torch.channels_last)
    for i, index in enumerate(indices.tolist()):
        flipped = flips is not None and bool(flips[i])
        expected = _albumentations_view(images[index].numpy(), int(shifts[i, 0]), int(shifts[i, 1]), flipped, pad=2)
        np.testing.assert_array_equal(out[i].permute(1, 2, 0).numpy(), expected, err_msg=f"view {i}")


def test_flipped_views_of_a_split_prepared_without_flips_are_refused() -> None:
    split = BatchAugment(translate=2, flip="none").prepare(_images(n=2, size=8))
    with pytest.raises(ValueError, match="prepared with flips"):
        translated_views(split, torch.tensor([0, 1]), torch.zeros(2, 2, dtype=torch.long), torch.tensor([True, False]))


def _all_views(image: np.ndarray, pad: int) -> list[np.ndarray]:
    return [
        _albumentations_view(image, dy, dx, flip, pad)
        for dy in range(-pad, pad + 1)
        for dx in range(-pad, pad + 1)
        for flip in (False, True)
    ]


def test_batch_views_shape_content_and_per_sample_randomness() -> None:
    images = _images(n=5, size=8)
    indices = torch.tensor([4, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])  # image 0 many times
    augment = BatchAugment(translate=2, flip="random")
    out = augment.views(augment.prepare(images), indices, generator=torch.Generator().manual_seed(0))
    assert out.shape == (16, 3, 8, 8) and out.dtype == torch.uint8
    assert out.is_contiguous(memory_format=torch.channels_last)
    for position, index in enumerate(indices.tolist()):
        view = out[position].permute(1, 2, 0).numpy()
        assert any(np.array_equal(view, candidate) for candidate in _all_views(images[index].numpy(), 2)), position
    # each copy of image 0 is drawn on its own: 14 copies out of 50 possible views are not all alike
    copies = {out[p].numpy().tobytes() for p in range(len(indices)) if indices[p] == 0}
    assert len(copies) > 5


def test_same_seed_same_views_other_seed_other_views() -> None:
    images = _images(n=32, size=8)
    indices = torch.arange(32)
    augment = BatchAugment(translate=2, flip="random", cutout=0)
    split = augment.prepare(images)
    first = augment.views(split, indices, generator=torch.Generator().manual_seed(7))
    again = augment.views(split, indices, generator=torch.Generator().manual_seed(7))
    other = augment.views(split, indices, generator=torch.Generator().manual_seed(8))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_no_translate_no_flip_is_the_identity() -> None:
    images = _images(n=4, size=8)
    augment = BatchAugment(translate=0, flip="none")
    out = augment.views(augment.prepare(images), torch.tensor([2, 1]))
    assert torch.equal(out.permute(0, 2, 3, 1), images[[2, 1]])


def test_alternating_flip_mirrors_every_image_on_odd_epochs() -> None:
    images = _images(n=6, size=8)
    indices = torch.arange(6)
    base = torch.tensor([True, False, True, False, False, True])
    augment = BatchAugment(translate=0, flip="alternating")
    split = augment.prepare(images)
    epoch0 = augment.views(split, indices, epoch=0, base_flips=base)
    epoch1 = augment.views(split, indices, epoch=1, base_flips=base)
    epoch2 = augment.views(split, indices, epoch=2, base_flips=base)
    originals = images.permute(0, 3, 1, 2)
    for i in range(6):
        expected0 = originals[i].flip(-1) if base[i] else originals[i]
        assert torch.equal(epoch0[i], expected0)
        assert torch.equal(epoch1[i], expected0.flip(-1))  # the other way round on odd epochs
    assert torch.equal(epoch0, epoch2)


def test_cutout_zeroes_one_clipped_square_per_image() -> None:
    images = torch.ones(200, 3, 10, 10)
    cutout_(images, 4, generator=torch.Generator().manual_seed(0))
    zero = images[:, 0] == 0
    assert torch.equal(zero, (images == 0).all(dim=1))  # all channels together
    sizes = zero.sum(dim=(1, 2))
    assert sizes.max() == 16 and sizes.min() >= 4  # 4x4 inside, at least 2x2 at a corner
    for mask in zero:
        rows = torch.nonzero(mask.any(dim=1)).flatten()
        cols = torch.nonzero(mask.any(dim=0)).flatten()
        assert mask.sum() == len(rows) * len(cols)  # a rectangle (a clipped square)
        assert len(rows) <= 4 and len(cols) <= 4
    positions = {tuple(torch.nonzero(mask)[0].tolist()) for mask in zero}
    assert len(positions) > 20  # each image its own square


@pytest.mark.parametrize("kwargs", [{"translate": -1}, {"cutout": -2}, {"flip": "sometimes"}])
def test_bad_settings_are_refused(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        BatchAugment(**kwargs)
