"""The published corruption parameters, one row per severity 1-5, and AlexNet's published errors.

Sources (Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to Common Corruptions and
Perturbations", ICLR 2019; code at github.com/hendrycks/robustness):

- ``IMAGENET``: ``ImageNet-C/create_c/make_imagenet_c.py`` (224 px images), used for every image
  larger than 32 px (at its own size: blur radii stay in pixels, pixelate/zoom are relative);
- ``CIFAR``: ``ImageNet-C/create_c/make_cifar_c.py`` (32 px), used for images of 32 px or less;
- ``ALEXNET_ERR``: AlexNet's top-1 error on ImageNet-C, averaged over the 5 severities, and
  ``ALEXNET_CLEAN_ERR`` its clean error (``ImageNet-C/test.py``; the paper's Table 3 normalisers
  of mCE and relative mCE).

Kept as plain data so the tests and the docs read the same numbers the operations use.
"""

from __future__ import annotations

from typing import Any

from litvision.datamodules.readers.shifted_sets import CORRUPTIONS as PUBLISHED_CORRUPTIONS
from litvision.datamodules.readers.shifted_sets import SEVERITIES as PUBLISHED_SEVERITIES

# the 15 ImageNet-C corruptions in the paper's order (noise, blur, weather, digital): one list for the
# published files the shifted-set readers load (CIFAR-10-C, ImageNet-C) and for the ones made here
CORRUPTIONS: tuple[str, ...] = PUBLISHED_CORRUPTIONS

SEVERITIES: tuple[int, ...] = PUBLISHED_SEVERITIES

# make_imagenet_c.py, ``c = [...][severity - 1]`` of each function
IMAGENET: dict[str, list[Any]] = {
    "gaussian_noise": [0.08, 0.12, 0.18, 0.26, 0.38],  # std of N(0, c) on [0, 1] pixels
    "shot_noise": [60, 25, 12, 5, 3],  # Poisson(x * c) / c
    "impulse_noise": [0.03, 0.06, 0.09, 0.17, 0.27],  # salt-and-pepper amount
    "defocus_blur": [(3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)],  # (disk radius, alias blur)
    "glass_blur": [(0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)],  # (sigma, max delta, iterations)
    "motion_blur": [(10, 3), (15, 5), (15, 8), (15, 12), (20, 15)],  # (radius, sigma)
    "zoom_blur": [(1.11, 0.01), (1.16, 0.01), (1.21, 0.02), (1.26, 0.02), (1.31, 0.03)],  # np.arange(1, stop, step)
    # (loc, scale, zoom, threshold, blur radius, blur sigma, blend)
    "snow": [
        (0.1, 0.3, 3, 0.5, 10, 4, 0.8),
        (0.2, 0.3, 2, 0.5, 12, 4, 0.7),
        (0.55, 0.3, 4, 0.9, 12, 8, 0.7),
        (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65),
        (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55),
    ],
    "frost": [(1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75)],  # (image weight, frost weight)
    "fog": [(1.5, 2), (2.0, 2), (2.5, 1.7), (2.5, 1.5), (3.0, 1.4)],  # (fog strength, plasma wibble decay)
    "brightness": [0.1, 0.2, 0.3, 0.4, 0.5],  # added to HSV value
    "contrast": [0.4, 0.3, 0.2, 0.1, 0.05],  # factor around the per-channel mean
    # (alpha, sigma, affine jitter), in pixels; the script multiplies by 244 ("should have been 224,
    # but ultimately nothing is incorrect", its comment): kept, as ImageNet-C was made with it
    "elastic_transform": [
        (244 * 2, 244 * 0.7, 244 * 0.1),
        (244 * 2, 244 * 0.08, 244 * 0.2),
        (244 * 0.05, 244 * 0.01, 244 * 0.02),
        (244 * 0.07, 244 * 0.01, 244 * 0.02),
        (244 * 0.12, 244 * 0.01, 244 * 0.02),
    ],
    "pixelate": [0.6, 0.5, 0.4, 0.3, 0.25],  # downscale factor (box filter down and up)
    "jpeg_compression": [25, 18, 15, 10, 7],  # JPEG quality
}

# make_cifar_c.py (IMSIZE = 32)
CIFAR: dict[str, list[Any]] = {
    "gaussian_noise": [0.04, 0.06, 0.08, 0.09, 0.10],
    "shot_noise": [500, 250, 100, 75, 50],
    "impulse_noise": [0.01, 0.02, 0.03, 0.05, 0.07],
    "defocus_blur": [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)],
    "glass_blur": [(0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)],
    "motion_blur": [(10, 1), (10, 1.5), (10, 2), (10, 2.5), (12, 3)],
    "zoom_blur": [(1.06, 0.01), (1.11, 0.01), (1.16, 0.01), (1.21, 0.01), (1.26, 0.01)],
    "snow": [
        (0.1, 0.2, 1, 0.6, 8, 3, 0.95),
        (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
        (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
        (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
        (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
    ],
    "frost": [(1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)],
    "fog": [(0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)],
    "brightness": [0.05, 0.1, 0.15, 0.2, 0.3],
    "contrast": [0.75, 0.5, 0.4, 0.3, 0.15],
    "elastic_transform": [
        (32 * 0, 32 * 0, 32 * 0.08),
        (32 * 0.05, 32 * 0.2, 32 * 0.07),
        (32 * 0.08, 32 * 0.06, 32 * 0.06),
        (32 * 0.1, 32 * 0.04, 32 * 0.05),
        (32 * 0.1, 32 * 0.03, 32 * 0.03),
    ],
    "pixelate": [0.95, 0.9, 0.85, 0.75, 0.65],
    "jpeg_compression": [80, 65, 58, 50, 40],
}

# ImageNet-C/test.py: AlexNet top-1 error per corruption, mean over severities 1-5
ALEXNET_ERR: dict[str, float] = {
    "gaussian_noise": 0.886428,
    "shot_noise": 0.894468,
    "impulse_noise": 0.922640,
    "defocus_blur": 0.819880,
    "glass_blur": 0.826268,
    "motion_blur": 0.785948,
    "zoom_blur": 0.798360,
    "snow": 0.866816,
    "frost": 0.826572,
    "fog": 0.819324,
    "brightness": 0.564592,
    "contrast": 0.853204,
    "elastic_transform": 0.646056,
    "pixelate": 0.717840,
    "jpeg_compression": 0.606500,
}
ALEXNET_CLEAN_ERR = 0.4348  # AlexNet's clean ImageNet top-1 error (the relative-mCE normaliser)

CIFAR_MAX_SIDE = 32  # images this size or smaller get the CIFAR table


def parameters(corruption: str, severity: int, height: int, width: int) -> Any:
    """The published parameters of ``corruption`` at ``severity`` for an image of this size."""
    table = CIFAR if max(height, width) <= CIFAR_MAX_SIDE else IMAGENET
    return table[corruption][severity - 1]
