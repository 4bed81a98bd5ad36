"""Readers of the published distribution-shift test sets, in the layouts their authors ship.

* CIFAR-10.1 (Recht et al. 2018): ``cifar10.1_<version>_data.npy`` (N, 32, 32, 3) uint8 and
  ``cifar10.1_<version>_labels.npy`` (N,) in CIFAR-10's label order; ``v6`` (2,000 images, the
  recommended one) or ``v4`` (2,021). There is no default: the two differ, and a loader that picks
  one silently (or one that was never published) reports a number nobody can compare.
* CIFAR-10-C (Hendrycks & Dietterich 2019): ``<corruption>.npy`` (50,000, 32, 32, 3) uint8 = the
  10,000 CIFAR-10 test images at severity 1, then 2, ... 5, stacked; ``labels.npy`` (50,000,).
* ImageNet-V2 (Recht et al. 2019): ``imagenetv2-<variant>-format-val/<k>/<hash>.jpeg`` with
  ``k`` = 0..999 the class INDEX (position in the sorted wnids: folder ``0`` is ``n01440764``,
  tench), not a wnid; a plain ImageFolder sorts the names as strings (0, 1, 10, 100, ...) and
  mislabels almost every class.
* ImageNet-C: ``<corruption>/<severity>/<wnid>/*.JPEG``; ImageNet-R, ImageNet-A:
  ``imagenet-{r,a}/<wnid>/*`` over 200 of the 1,000 classes (:data:`IMAGENET_SUBSETS`);
  ImageNet-Sketch: ``sketch/<wnid>/*.JPEG`` over all 1,000.

Every ``.npy`` is read with ``allow_pickle=False``: a data file is never code. Nothing here
downloads; :data:`DOWNLOADS` lists where each set is published, with the SHA-256 that
TensorFlow Datasets records (``tensorflow_datasets/url_checksums``) where one exists.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from litvision.datamodules.readers.imagenet_index import shipped_class_names
from litvision.utils.errors import ConfigError, DataError, MissingDataError

log = logging.getLogger(__name__)

CIFAR10_1_VERSIONS = {"v6": 2000, "v4": 2021}  # version -> number of images
CIFAR10_C_ROWS_PER_SEVERITY = 10_000
SEVERITIES = (1, 2, 3, 4, 5)
# The 15 corruptions of the benchmark (mCE is averaged over these), then the 4 extra ones shipped
# beside them (Hendrycks & Dietterich 2019, appendix), which are not part of mCE.
CORRUPTIONS = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "glass_blur",
    "motion_blur",
    "zoom_blur",
    "snow",
    "frost",
    "fog",
    "brightness",
    "contrast",
    "elastic_transform",
    "pixelate",
    "jpeg_compression",
)
EXTRA_CORRUPTIONS = ("gaussian_blur", "saturate", "spatter", "speckle_noise")
IMAGENET_V2_VARIANTS = {
    "matched-frequency": "imagenetv2-matched-frequency-format-val",
    "threshold-0.7": "imagenetv2-threshold0.7-format-val",
    "top-images": "imagenetv2-top-images-format-val",
}


@dataclass(frozen=True)
class Download:
    """Where a set is published; ``sha256`` of the archive where a checksum is published."""

    url: str
    sha256: str | None = None
    size: int | None = None


DOWNLOADS: dict[str, list[Download]] = {
    "cifar10_1": [
        Download(
            "https://github.com/modestyachts/CIFAR-10.1/raw/master/datasets/cifar10.1_v6_data.npy",
            "2997188e5816f5bd545dc77771b6227828c28146049fcecf3fa10775474cacc6",
            6144128,
        ),
        Download(
            "https://github.com/modestyachts/CIFAR-10.1/raw/master/datasets/cifar10.1_v6_labels.npy",
            "ae40beda001693674edc94d925ee8268cfe68905f8f9aff800c8dcdfcd6c9448",
            8128,
        ),
        Download(
            "https://github.com/modestyachts/CIFAR-10.1/raw/master/datasets/cifar10.1_v4_data.npy",
            "5aaedc268df8f4cffca2ac0cf9e608ae1897a8cddb630c7a850a2ea8f6558e75",
            6208640,
        ),
        Download(
            "https://github.com/modestyachts/CIFAR-10.1/raw/master/datasets/cifar10.1_v4_labels.npy",
            "1f9544300ded199539b6662364ce7fe6c2e1ea9f87408f06db4b1a6184cffb18",
            8212,
        ),
    ],
    "cifar10_c": [
        Download(
            "https://zenodo.org/record/2535967/files/CIFAR-10-C.tar",
            "c72763e101c723b7c507b96205f7e938912a5d587376173b825850cf3cb876a7",
            2918471680,
        )
    ],
    "imagenet_v2": [
        Download(
            "https://huggingface.co/datasets/vaishaal/ImageNetV2/resolve/main/imagenetv2-matched-frequency.tar.gz",
            "f0c37fdf925916b19ea1323cd9a2208cdb6959ba2c32eef2a7fc393835c9ca7c",
            1264079360,
        ),
        Download(
            "https://huggingface.co/datasets/vaishaal/ImageNetV2/resolve/main/imagenetv2-threshold0.7.tar.gz",
            "32142bfe998f9cfa4141be691f6a80eeb1e27b24bd532a668eb08c26d98897a2",
            1249906176,
        ),
        Download(
            "https://huggingface.co/datasets/vaishaal/ImageNetV2/resolve/main/imagenetv2-top-images.tar.gz",
            "85e4ace30f3f0d660152062254b8759dda66267b27f7ec0fd8d5768f1073a04b",
            1245927936,
        ),
    ],
    # no published checksums for ImageNet-C (five archives: blur, digital, extra, noise, weather)
    "imagenet_c": [
        Download(f"https://zenodo.org/record/2235448/files/{part}.tar")
        for part in ("blur", "digital", "noise", "weather", "extra")
    ],
    "imagenet_r": [
        Download(
            "https://people.eecs.berkeley.edu/~hendrycks/imagenet-r.tar",
            "18c6bf493b39a0d975d48e587437f562caab9c52ae6327dcfa9dd8eb54aa1b52",
            2191079936,
        )
    ],
    "imagenet_a": [
        Download(
            "https://people.eecs.berkeley.edu/~hendrycks/imagenet-a.tar",
            "3bb3632277e6ba6392ea64c02ddbf4dd2266c9caffd6bc09c9656d28f012589e",
            687552512,
        )
    ],
    # published on Google Drive and the Hugging Face hub (songweig/imagenet_sketch), no checksum
    "imagenet_sketch": [Download("https://huggingface.co/datasets/songweig/imagenet_sketch")],
}

# Positions in the sorted 1,000 ILSVRC-2012 wnids of the 200 classes ImageNet-R and ImageNet-A
# cover, as their authors score them: imagenet_r_mask in hendrycks/imagenet-r eval.py and
# indices_in_1k (thousand_k_to_200 != -1) in hendrycks/natural-adv-examples eval.py.
IMAGENET_SUBSETS: dict[str, tuple[int, ...]] = {
    "imagenet_r": (
        1,
        2,
        4,
        6,
        8,
        9,
        11,
        13,
        22,
        23,
        26,
        29,
        31,
        39,
        47,
        63,
        71,
        76,
        79,
        84,
        90,
        94,
        96,
        97,
        99,
        100,
        105,
        107,
        113,
        122,
        125,
        130,
        132,
        144,
        145,
        147,
        148,
        150,
        151,
        155,
        160,
        161,
        162,
        163,
        171,
        172,
        178,
        187,
        195,
        199,
        203,
        207,
        208,
        219,
        231,
        232,
        234,
        235,
        242,
        245,
        247,
        250,
        251,
        254,
        259,
        260,
        263,
        265,
        267,
        269,
        276,
        277,
        281,
        288,
        289,
        291,
        292,
        293,
        296,
        299,
        301,
        308,
        309,
        310,
        311,
        314,
        315,
        319,
        323,
        327,
        330,
        334,
        335,
        337,
        338,
        340,
        341,
        344,
        347,
        353,
        355,
        361,
        362,
        365,
        366,
        367,
        368,
        372,
        388,
        390,
        393,
        397,
        401,
        407,
        413,
        414,
        425,
        428,
        430,
        435,
        437,
        441,
        447,
        448,
        457,
        462,
        463,
        469,
        470,
        471,
        472,
        476,
        483,
        487,
        515,
        546,
        555,
        558,
        570,
        579,
        583,
        587,
        593,
        594,
        596,
        609,
        613,
        617,
        621,
        629,
        637,
        657,
        658,
        701,
        717,
        724,
        763,
        768,
        774,
        776,
        779,
        780,
        787,
        805,
        812,
        815,
        820,
        824,
        833,
        847,
        852,
        866,
        875,
        883,
        889,
        895,
        907,
        928,
        931,
        932,
        933,
        934,
        936,
        937,
        943,
        945,
        947,
        948,
        949,
        951,
        953,
        954,
        957,
        963,
        965,
        967,
        980,
        981,
        983,
        988,
    ),  # fmt: skip
    "imagenet_a": (
        6,
        11,
        13,
        15,
        17,
        22,
        23,
        27,
        30,
        37,
        39,
        42,
        47,
        50,
        57,
        70,
        71,
        76,
        79,
        89,
        90,
        94,
        96,
        97,
        99,
        105,
        107,
        108,
        110,
        113,
        124,
        125,
        130,
        132,
        143,
        144,
        150,
        151,
        207,
        234,
        235,
        254,
        277,
        283,
        287,
        291,
        295,
        298,
        301,
        306,
        307,
        308,
        309,
        310,
        311,
        313,
        314,
        315,
        317,
        319,
        323,
        324,
        326,
        327,
        330,
        334,
        335,
        336,
        347,
        361,
        363,
        372,
        378,
        386,
        397,
        400,
        401,
        402,
        404,
        407,
        411,
        416,
        417,
        420,
        425,
        428,
        430,
        437,
        438,
        445,
        456,
        457,
        461,
        462,
        470,
        472,
        483,
        486,
        488,
        492,
        496,
        514,
        516,
        528,
        530,
        539,
        542,
        543,
        549,
        552,
        557,
        561,
        562,
        569,
        572,
        573,
        575,
        579,
        589,
        606,
        607,
        609,
        614,
        626,
        627,
        640,
        641,
        642,
        643,
        658,
        668,
        677,
        682,
        684,
        687,
        701,
        704,
        719,
        736,
        746,
        749,
        752,
        758,
        763,
        765,
        768,
        773,
        774,
        776,
        779,
        780,
        786,
        792,
        797,
        802,
        803,
        804,
        813,
        815,
        820,
        823,
        831,
        833,
        835,
        839,
        845,
        847,
        850,
        859,
        862,
        870,
        879,
        880,
        888,
        890,
        897,
        900,
        907,
        913,
        924,
        932,
        933,
        934,
        937,
        943,
        945,
        947,
        951,
        954,
        956,
        957,
        959,
        971,
        972,
        980,
        981,
        984,
        986,
        987,
        988,
    ),  # fmt: skip
}


def imagenet_wnids() -> list[str]:
    """The 1,000 ILSVRC-2012 wnids in class-index order (sorted, as every ImageNet checkpoint has them)."""
    return sorted(shipped_class_names())


def _load_npy(path: Path, what: str, mmap: bool = False) -> np.ndarray:
    if not path.is_file():
        raise MissingDataError(f"{path} not found: {what}")
    try:
        return np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
    except ValueError as err:  # an object array (pickled) or a broken header
        raise DataError(f"{path}: not a plain .npy array ({err})") from err


def _check_images(images: np.ndarray, path: Path) -> None:
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (32, 32, 3):
        raise DataError(f"{path}: expected uint8 images of shape (N, 32, 32, 3), got {images.dtype} {images.shape}")


def _check_labels(labels: np.ndarray, n: int, path: Path, num_classes: int = 10) -> np.ndarray:
    if labels.ndim != 1 or len(labels) != n or labels.dtype.kind not in "iu":
        raise DataError(f"{path}: expected {n} integer labels, got {labels.dtype} {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(f"{path}: labels outside 0..{num_classes - 1} ({labels.min()}..{labels.max()})")
    return labels.astype(np.int64)


def cifar10_1_files(root: str | os.PathLike, version: str | None) -> tuple[Path, Path]:
    """The data and labels files of CIFAR-10.1 ``version``; refuses a missing or unknown version."""
    if version not in CIFAR10_1_VERSIONS:
        raise ConfigError(
            f"dataset.version={version}: CIFAR-10.1 has no default version, pick the one you report: "
            "dataset.version=v6 (2,000 images, recommended by its authors) or dataset.version=v4 (2,021)"
        )
    root = Path(root).expanduser()
    return root / f"cifar10.1_{version}_data.npy", root / f"cifar10.1_{version}_labels.npy"


def load_cifar10_1(root: str | os.PathLike, version: str | None) -> tuple[np.ndarray, np.ndarray]:
    """``(images (N, 32, 32, 3) uint8, labels (N,) int64)`` of CIFAR-10.1 ``version`` (v6 or v4)."""
    data_path, labels_path = cifar10_1_files(root, version)
    hint = f"download it from {DOWNLOADS['cifar10_1'][0].url.rsplit('/', 1)[0]}/ into dataset.data_dir"
    images = _load_npy(data_path, hint)
    _check_images(images, data_path)
    labels = _check_labels(_load_npy(labels_path, hint), len(images), labels_path)
    return images, labels


def check_selection(corruptions: list[str], severities: list[int], known: tuple[str, ...]) -> None:
    """Refuse, in one line, an unknown corruption or severity (before any file is opened)."""
    unknown = [c for c in corruptions if c not in known]
    if unknown or not corruptions:
        raise ConfigError(
            f"dataset.corruptions={corruptions}: unknown {unknown}; choose among {list(known)} (or all / all15)"
        )
    bad = [s for s in severities if s not in SEVERITIES]
    if bad or not severities:
        raise ConfigError(f"dataset.severities={severities}: severities are 1..5")


def load_cifar10_c(
    root: str | os.PathLike, corruption: str, severities: list[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(images, labels, ids)`` of ``<corruption>.npy`` at ``severities``; ids ``<corruption>/<severity>/<n>``,
    n = the CIFAR-10 test image the row corrupts (its ``test/<n>``).

    The file is memory-mapped and only the chosen severities' rows are read. A file of another
    length than 5 x 10,000 rows is accepted if it divides into 5 equal severities (a subset
    written the same way), so tests can use small files of the same layout.
    """
    root = Path(root).expanduser()
    hint = f"CIFAR-10-C ({DOWNLOADS['cifar10_c'][0].url}) unpacks into a folder of <corruption>.npy + labels.npy"
    images = _load_npy(root / f"{corruption}.npy", hint, mmap=True)
    _check_images(images, root / f"{corruption}.npy")
    labels = _check_labels(np.asarray(_load_npy(root / "labels.npy", hint)), len(images), root / "labels.npy")
    if len(images) % len(SEVERITIES):
        raise DataError(f"{root / corruption}.npy: {len(images)} rows do not split into 5 severities")
    per = len(images) // len(SEVERITIES)
    if per != CIFAR10_C_ROWS_PER_SEVERITY:
        log.info("%s.npy: %d rows per severity (the published files have 10,000)", corruption, per)
    rows = np.concatenate([np.arange((s - 1) * per, s * per) for s in severities])
    ids = [f"{corruption}/{s}/{n}" for s in severities for n in range(per)]
    return np.ascontiguousarray(images[rows]), labels[rows], np.asarray(ids)


def imagenet_v2_dir(root: str | os.PathLike, variant: str | None) -> Path:
    """The variant's folder: ``root`` itself if it holds the class folders, else ``root/<published name>``."""
    if variant not in IMAGENET_V2_VARIANTS:
        raise ConfigError(f"dataset.variant={variant}: ImageNet-V2 has the variants {list(IMAGENET_V2_VARIANTS)}")
    root = Path(root).expanduser()
    nested = root / IMAGENET_V2_VARIANTS[variant]
    return nested if nested.is_dir() else root


def check_subset_folders(wnids_present: list[str], name: str) -> None:
    """ImageNet-R/-A folders must be among their 200 classes: another folder means another dataset."""
    allowed = {imagenet_wnids()[i] for i in IMAGENET_SUBSETS[name]}
    outside = sorted(set(wnids_present) - allowed)
    if outside:
        raise DataError(f"{name}: class folders outside its 200 classes: {outside[:5]} (is dataset.data_dir right?)")
