"""The test-time hook ``robustness=corruptions`` hands the DataModule: clean + every (corruption, severity).

A :class:`CorruptionHook` is a picklable callable the test loader's workers apply to each decoded,
eval-transformed uint8 image (``hook(image, sample_id, variant)``), before the batch is normalised
on the device; variant 0 is the clean image. What a variant does to an image is a function of
(seed, corruption, severity, sample id) only: not of the worker, the rank, the batch or the order,
so a DDP run, a rerun or a run with other ``num_workers`` corrupts every image identically.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence

import numpy as np

from litvision.datamodules.transforms.corruptions.ops import OPS
from litvision.datamodules.transforms.corruptions.tables import CORRUPTIONS, SEVERITIES, parameters
from litvision.utils.errors import ConfigError

CLEAN = "clean"


def corruption_names(corruptions: str | Sequence[str]) -> list[str]:
    """``all15`` or a list of names (``robustness.corruptions``), checked against the 15."""
    names = (
        list(CORRUPTIONS) if corruptions == "all15" else [corruptions] if isinstance(corruptions, str) else corruptions
    )
    names = [str(name) for name in names]
    unknown = [name for name in names if name not in CORRUPTIONS]
    if unknown or not names:
        raise ConfigError(
            f"robustness.corruptions: {'unknown corruption ' + repr(unknown[0]) if unknown else 'empty'}; "
            f"use all15 or a list of {', '.join(CORRUPTIONS)}"
        )
    if len(set(names)) != len(names):
        raise ConfigError(f"robustness.corruptions={names}: a corruption is listed twice")
    return names


def severity_levels(severities: int | Sequence[int]) -> list[int]:
    """``robustness.severities``: a list (or one) of 1..5."""
    values = [severities] if isinstance(severities, (int, str)) else list(severities)
    bad = [v for v in values if isinstance(v, bool) or str(v).strip() not in {str(s) for s in SEVERITIES}]
    if bad or not values:
        raise ConfigError(
            f"robustness.severities: {'severity ' + repr(bad[0]) if bad else 'empty'}; ImageNet-C's severities are "
            "1 to 5, e.g. robustness.severities=[1,2,3,4,5]"
        )
    levels = [int(v) for v in values]
    if len(set(levels)) != len(levels):
        raise ConfigError(f"robustness.severities={levels}: a severity is listed twice")
    return levels


def id_key(sample_id: str) -> list[int]:
    """A sample id as seed words, the same in every process (``hash()`` is salted per process)."""
    digest = hashlib.blake2b(sample_id.encode("utf-8", "surrogateescape"), digest_size=8).digest()
    value = int.from_bytes(digest, "little")
    return [value & 0xFFFFFFFF, value >> 32]


class CorruptionHook:
    """Variant 0: clean; then every corruption at every severity, in the order given.

    Args:
        corruptions: names from :data:`~.tables.CORRUPTIONS` (or ``all15``).
        severities: from 1..5.
        seed: mixed into every image's generator (``robustness.seed``).
    """

    def __init__(self, corruptions: str | Sequence[str], severities: int | Sequence[int], seed: int = 0) -> None:
        names, levels = corruption_names(corruptions), severity_levels(severities)
        self.variants: list[tuple[str, int]] = [(CLEAN, 0)] + [(n, s) for n in names for s in levels]
        self.seed = int(seed)
        self._pid: int | None = None

    def __len__(self) -> int:
        return len(self.variants)

    def names(self) -> list[str]:
        """``clean``, ``gaussian_noise/1``, ...: the variants in order."""
        return [CLEAN if name == CLEAN else f"{name}/{severity}" for name, severity in self.variants]

    def rng(self, variant: int, sample_id: str) -> np.random.Generator:
        name, severity = self.variants[variant]
        return np.random.default_rng([self.seed, CORRUPTIONS.index(name), severity, *id_key(sample_id)])

    def __call__(self, image: np.ndarray, sample_id: str, variant: int) -> np.ndarray:
        if self._pid != os.getpid():
            self._first_call_in_process()
        name, severity = self.variants[variant]
        if name == CLEAN:
            return image
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ConfigError(
                f"robustness=corruptions corrupts uint8 RGB images, got {image.dtype} {image.shape}: drop a "
                "Normalize/ToFloat from augmentation.eval (litvision normalises on the device)"
            )
        params = parameters(name, severity, image.shape[0], image.shape[1])
        out = OPS[name](np.ascontiguousarray(image), params, self.rng(variant, sample_id))
        return np.ascontiguousarray(out, dtype=np.uint8)

    def _first_call_in_process(self) -> None:
        """In a (forked) loader worker: one OpenCV thread. OpenCV's pool, inherited half-initialised through
        fork, can hang a worker, and its threads only oversubscribe the cores the other workers use."""
        import cv2
        from torch.utils.data import get_worker_info

        if get_worker_info() is not None:
            cv2.setNumThreads(1)
        self._pid = os.getpid()
