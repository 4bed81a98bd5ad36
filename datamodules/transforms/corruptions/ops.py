"""The 15 ImageNet-C corruptions as functions of (uint8 HxWx3 image, published parameters, rng).

Each follows the function of the same name in Hendrycks & Dietterich's ``make_imagenet_c.py`` /
``make_cifar_c.py`` (parameters: :mod:`.tables`), with every random draw taken from the ``rng``
passed in, so a corrupted image is a function of that generator's seed. Albumentations does the
work where it has the operation at the published parameters: Gaussian noise (``GaussNoise``),
defocus, glass and zoom blur (its functional versions, written after ImageNet-C's) and JPEG
(``ImageCompression``). The rest is numpy/OpenCV here, because Albumentations' versions differ
from the published ones: its ``ShotNoise`` works in gamma-linear space, ``SaltAndPepper`` hits all
channels of a pixel at once (ImageNet-C flips each channel value on its own), ``RandomSnow``,
``RandomFog``, ``ElasticTransform``, ``MotionBlur`` and ``RandomBrightnessContrast`` are other
algorithms, and it has no pixelate and no frost. Deliberate differences from the scripts:

- motion blur (ImageMagick's ``MotionBlurImage`` there, via Wand): the same one-sided Gaussian
  line kernel, built here and applied with ``cv2.filter2D``;
- frost: the scripts blend in crops of six frost photographs that are not ours to ship; a
  deterministic synthetic frost texture (:func:`frost_textures`) takes their place, so frost
  numbers are comparable between litvision runs, not with published ImageNet-C/CIFAR-10-C frost;
- glass blur uses Albumentations' vectorised ``fast`` pixel shuffle (the script's pixel-by-pixel
  Python loop costs ~0.2 s per 224 px image; same parameters, same displacement distribution);
- resizing (zoom, pixelate, snow) is OpenCV's, JPEG is OpenCV's encoder, where the scripts use
  scipy/PIL: the pixels differ slightly, the corruption does not.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import albumentations as A
import cv2
import numpy as np
from albumentations.augmentations.blur import functional as albu_blur
from scipy.ndimage import gaussian_filter

Op = Callable[[np.ndarray, Any, np.random.Generator], np.ndarray]


def _to_uint8(x: np.ndarray) -> np.ndarray:
    """[0, 1] floats -> uint8 (the scripts' ``np.clip(x, 0, 1) * 255``, then saved as uint8)."""
    return np.clip(x * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _float(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float32) / 255.0


@functools.lru_cache(maxsize=64)
def _albumentation(name: str, params: Any) -> A.BasicTransform:
    """One Albumentations transform per (corruption, parameters), built once per process."""
    if name == "gaussian_noise":
        return A.GaussNoise(std_range=(params, params), mean_range=(0.0, 0.0), per_channel=True, p=1.0)
    if name == "jpeg_compression":
        return A.ImageCompression(quality_range=(params, params), compression_type="jpeg", p=1.0)
    raise KeyError(name)


def _seeded(name: str, params: Any, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    transform = _albumentation(name, params)
    transform.set_random_seed(int(rng.integers(2**31)))
    return transform(image=image)["image"]


# ---- noise -------------------------------------------------------------------------------
def gaussian_noise(image: np.ndarray, c: float, rng: np.random.Generator) -> np.ndarray:
    return _seeded("gaussian_noise", float(c), image, rng)


def shot_noise(image: np.ndarray, c: float, rng: np.random.Generator) -> np.ndarray:
    return _to_uint8(rng.poisson(_float(image) * c) / c)


def impulse_noise(image: np.ndarray, c: float, rng: np.random.Generator) -> np.ndarray:
    """skimage's ``random_noise(mode='s&p', amount=c)``: each channel value flipped on its own."""
    flipped = rng.random(image.shape) < c
    salt = rng.random(image.shape) < 0.5
    out = image.copy()
    out[flipped & salt] = 255
    out[flipped & ~salt] = 0
    return out


# ---- blur --------------------------------------------------------------------------------
def defocus_blur(image: np.ndarray, c: tuple[float, float], rng: np.random.Generator) -> np.ndarray:
    return albu_blur.defocus(image, c[0], c[1])  # a float radius: CIFAR's table has them


def glass_blur(image: np.ndarray, c: tuple[float, int, int], rng: np.random.Generator) -> np.ndarray:
    sigma, delta, iterations = c
    height, width = image.shape[:2]
    # Albumentations' GlassBlur draw: one (dy, dx) per inner pixel and iteration, in [-delta, delta)
    pixels = max(0, height - 2 * delta) * max(0, width - 2 * delta)
    dxy = rng.integers(-delta, delta, size=(pixels, iterations, 2))
    return albu_blur.glass_blur(image, sigma, delta, iterations, dxy, "fast")


def line_kernel(radius: float, sigma: float, angle: float) -> np.ndarray:
    """ImageMagick's motion-blur kernel: a one-sided Gaussian of width ``2 * radius + 1`` along ``angle`` (degrees)."""
    width = 2 * int(np.ceil(radius)) + 1
    steps = np.arange(width)
    weights = np.exp(-(steps**2) / (2 * sigma**2))
    weights /= weights.sum()
    kernel = np.zeros((2 * width + 1, 2 * width + 1), dtype=np.float32)
    theta = np.deg2rad(angle)
    ox = np.floor(steps * np.cos(theta) + 0.5).astype(int)
    oy = np.floor(steps * np.sin(theta) + 0.5).astype(int)
    np.add.at(kernel, (width + oy, width + ox), weights.astype(np.float32))
    return kernel


def _motion(x: np.ndarray, radius: float, sigma: float, angle: float) -> np.ndarray:
    return cv2.filter2D(x, -1, line_kernel(radius, sigma, angle), borderType=cv2.BORDER_REPLICATE)


def motion_blur(image: np.ndarray, c: tuple[float, float], rng: np.random.Generator) -> np.ndarray:
    return _motion(image, c[0], c[1], float(rng.uniform(-45, 45)))


def zoom_blur(image: np.ndarray, c: tuple[float, float], rng: np.random.Generator) -> np.ndarray:
    return albu_blur.zoom_blur(image, np.arange(1, c[0], c[1]))


# ---- weather -----------------------------------------------------------------------------
def _clipped_zoom(x: np.ndarray, factor: float) -> np.ndarray:
    """The scripts' ``clipped_zoom``: the centre 1/factor of ``x`` scaled back to ``x``'s size."""
    height, width = x.shape[:2]
    ch, cw = int(np.ceil(height / factor)), int(np.ceil(width / factor))
    top, left = (height - ch) // 2, (width - cw) // 2
    zoomed = cv2.resize(x[top : top + ch, left : left + cw], None, fx=factor, fy=factor, interpolation=cv2.INTER_LINEAR)
    trim_top, trim_left = (zoomed.shape[0] - height) // 2, (zoomed.shape[1] - width) // 2
    return zoomed[trim_top : trim_top + height, trim_left : trim_left + width]


def snow(image: np.ndarray, c: tuple[float, ...], rng: np.random.Generator) -> np.ndarray:
    loc, scale, zoom, threshold, radius, sigma, blend = c
    x = _float(image)
    height, width = x.shape[:2]
    layer = rng.normal(loc=loc, scale=scale, size=(height, width)).astype(np.float32)
    layer = _clipped_zoom(layer, zoom)
    layer[layer < threshold] = 0
    # the scripts round-trip the layer through an 8-bit PNG before blurring it
    layer = np.round(np.clip(layer, 0, 1) * 255) / 255.0
    layer = _motion(layer.astype(np.float32), radius, sigma, float(rng.uniform(-135, -45)))[..., None]
    gray = cv2.cvtColor(x, cv2.COLOR_RGB2GRAY)[..., None]
    x = blend * x + (1 - blend) * np.maximum(x, gray * 1.5 + 0.5)
    return _to_uint8(x + layer + np.rot90(layer, k=2))


FROST_TEXTURES = 6  # the scripts pick one of six frost photographs


@functools.lru_cache(maxsize=8)
def frost_textures(side: int) -> tuple[np.ndarray, ...]:
    """Six synthetic frost textures (float32 ``side x side x 3`` in [0, 1]), the same in every process.

    Stand-ins for the scripts' frost photographs: ice crystals as many thin bright needles at
    random angles and lengths (short ones clustered, a few long ones), a fine granular haze,
    lightly blurred and tinted cold blue-white. Seeded by a constant, so they are fixed data.
    """
    textures = []
    for k in range(FROST_TEXTURES):
        rng = np.random.default_rng([0xF7057, k, side])
        canvas = np.zeros((side, side), dtype=np.float32)
        needles = int(side * side / 40)
        centres = rng.uniform(0, side, size=(needles, 2))
        lengths = rng.pareto(2.5, size=needles) * side / 40 + side / 100
        angles = rng.uniform(0, np.pi, size=needles)
        brightness = rng.uniform(0.15, 0.6, size=needles)
        ends = centres + np.stack([np.cos(angles), np.sin(angles)], axis=1) * lengths[:, None]
        for (x0, y0), (x1, y1), b in zip(centres, ends, brightness, strict=True):
            cv2.line(canvas, (int(x0), int(y0)), (int(x1), int(y1)), float(b), 1, cv2.LINE_AA)
        haze = cv2.GaussianBlur(rng.random((side, side)).astype(np.float32), (0, 0), max(0.5, side / 256))
        canvas = cv2.GaussianBlur(canvas, (0, 0), max(0.4, side / 512)) + 0.35 * haze
        canvas = np.clip(canvas / max(float(np.percentile(canvas, 99.5)), 1e-6), 0, 1)
        tint = np.array([0.82, 0.9, 1.0], dtype=np.float32)
        textures.append(canvas[..., None] * tint)
    return tuple(textures)


def frost(image: np.ndarray, c: tuple[float, float], rng: np.random.Generator) -> np.ndarray:
    height, width = image.shape[:2]
    # the photographs are larger than the image (CIFAR: scaled by 0.2), crops start anywhere
    side = max(2 * max(height, width), 64)
    texture = frost_textures(side)[int(rng.integers(FROST_TEXTURES))]
    top, left = int(rng.integers(0, side - height + 1)), int(rng.integers(0, side - width + 1))
    crop = texture[top : top + height, left : left + width]
    return _to_uint8(c[0] * _float(image) + c[1] * crop)


def plasma_fractal(mapsize: int, wibbledecay: float, rng: np.random.Generator) -> np.ndarray:
    """The scripts' diamond-square height map (``mapsize`` a power of 2), scaled to [0, 1]."""
    maparray = np.zeros((mapsize, mapsize), dtype=np.float64)
    stepsize, wibble = mapsize, 100.0

    def wibbled_mean(array: np.ndarray) -> np.ndarray:
        return array / 4 + wibble * rng.uniform(-wibble, wibble, array.shape)

    while stepsize >= 2:
        half = stepsize // 2
        corners = maparray[0:mapsize:stepsize, 0:mapsize:stepsize]
        squares = corners + np.roll(corners, shift=-1, axis=0)
        squares += np.roll(squares, shift=-1, axis=1)
        maparray[half:mapsize:stepsize, half:mapsize:stepsize] = wibbled_mean(squares)
        centres = maparray[half:mapsize:stepsize, half:mapsize:stepsize]
        corners = maparray[0:mapsize:stepsize, 0:mapsize:stepsize]
        left = centres + np.roll(centres, 1, axis=0) + corners + np.roll(corners, -1, axis=1)
        maparray[0:mapsize:stepsize, half:mapsize:stepsize] = wibbled_mean(left)
        top = centres + np.roll(centres, 1, axis=1) + corners + np.roll(corners, -1, axis=0)
        maparray[half:mapsize:stepsize, 0:mapsize:stepsize] = wibbled_mean(top)
        stepsize //= 2
        wibble /= wibbledecay
    maparray -= maparray.min()
    return maparray / maparray.max()


def fog(image: np.ndarray, c: tuple[float, float], rng: np.random.Generator) -> np.ndarray:
    x = _float(image)
    height, width = x.shape[:2]
    mapsize = 1 << int(np.ceil(np.log2(max(height, width, 2))))  # 256 for 224 px, 32 for CIFAR, as there
    max_val = float(x.max())
    x = x + c[0] * plasma_fractal(mapsize, c[1], rng)[:height, :width, None].astype(np.float32)
    return _to_uint8(x * max_val / (max_val + c[0]))


def brightness(image: np.ndarray, c: float, rng: np.random.Generator) -> np.ndarray:
    hsv = cv2.cvtColor(_float(image), cv2.COLOR_RGB2HSV)
    hsv[..., 2] = np.clip(hsv[..., 2] + c, 0, 1)
    return _to_uint8(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB))


# ---- digital -----------------------------------------------------------------------------
def contrast(image: np.ndarray, c: float, rng: np.random.Generator) -> np.ndarray:
    x = _float(image)
    means = x.mean(axis=(0, 1), keepdims=True)
    return _to_uint8((x - means) * c + means)


def elastic_transform(image: np.ndarray, c: tuple[float, float, float], rng: np.random.Generator) -> np.ndarray:
    alpha, sigma, jitter = c
    x = _float(image)
    height, width = x.shape[:2]
    centre = (
        np.array([height, width], dtype=np.float32) // 2
    )  # the script's (row, col) centre, used as (x, y) there too
    size = min(height, width) // 3
    pts1 = np.array([centre + size, [centre[0] + size, centre[1] - size], centre - size], dtype=np.float32)
    pts2 = pts1 + rng.uniform(-jitter, jitter, size=pts1.shape).astype(np.float32)
    x = cv2.warpAffine(x, cv2.getAffineTransform(pts1, pts2), (width, height), borderMode=cv2.BORDER_REFLECT_101)
    dx = rng.uniform(-1, 1, size=(height, width))
    dy = rng.uniform(-1, 1, size=(height, width))
    if sigma > 0:  # skimage's gaussian(mode='reflect', truncate=3) of the script
        dx = gaussian_filter(dx, sigma, mode="reflect", truncate=3)
        dy = gaussian_filter(dy, sigma, mode="reflect", truncate=3)
    cols, rows = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    map_x = (cols + alpha * dx).astype(np.float32)
    map_y = (rows + alpha * dy).astype(np.float32)
    return _to_uint8(cv2.remap(x, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT))


def pixelate(image: np.ndarray, c: float, rng: np.random.Generator) -> np.ndarray:
    height, width = image.shape[:2]
    small = cv2.resize(
        image, (max(1, int(width * c)), max(1, int(height * c))), interpolation=cv2.INTER_AREA
    )  # PIL's BOX down
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_NEAREST)  # BOX up = nearest


def jpeg_compression(image: np.ndarray, c: int, rng: np.random.Generator) -> np.ndarray:
    return _seeded("jpeg_compression", int(c), image, rng)


OPS: dict[str, Op] = {
    "gaussian_noise": gaussian_noise,
    "shot_noise": shot_noise,
    "impulse_noise": impulse_noise,
    "defocus_blur": defocus_blur,
    "glass_blur": glass_blur,
    "motion_blur": motion_blur,
    "zoom_blur": zoom_blur,
    "snow": snow,
    "frost": frost,
    "fog": fog,
    "brightness": brightness,
    "contrast": contrast,
    "elastic_transform": elastic_transform,
    "pixelate": pixelate,
    "jpeg_compression": jpeg_compression,
}
