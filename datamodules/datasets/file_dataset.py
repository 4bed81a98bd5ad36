"""Map-style dataset over image files on disk (ImageNet, class folders).

Labels live in arrays, so samplers and splits never decode an image; paths are one
fixed-width bytes array rather than a list of Python strings, so forked DataLoader workers
do not copy-on-write-duplicate a 1.28M-entry list through reference counting.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, default_collate, get_worker_info
from torch.utils.data._utils.collate import collate_tensor_fn

from litvision.datamodules.datasets.array_dataset import image_to_tensor
from litvision.datamodules.readers.decode import DEFAULT_MAX_IMAGE_PIXELS, BadImageError, BadImageLog, BadImagePolicy
from litvision.datamodules.readers.jpeg_pipeline import SamplePipeline
from litvision.datamodules.transforms.pipeline import reseed_once_per_worker
from litvision.utils.errors import DataError

# A training sample whose file is unreadable is replaced by the next file in index order
# (same class, as indices are grouped by class); this many in a row means a broken tree.
MAX_REPLACEMENTS = 32


def stack_images(images: list[torch.Tensor]) -> torch.Tensor:
    """Stack CHW images into an NCHW batch without de-interleaving the pixels.

    Items are CHW *views* of HWC (decoded, interleaved) arrays. ``default_collate`` would copy
    each into planar NCHW with a strided copy costing ~3% of a JPEG decode per image; stacking
    the HWC views is a plain memcpy, and permuting the batch gives NCHW shape with
    channels-last strides: the layout channels-last models want anyway, kept through pinning,
    the device copy and ``BatchNormalize``. Other tensors are collated as usual.
    """
    first = images[0]
    different = next((image for image in images if image.shape != first.shape), None)
    if different is not None:
        # default_collate's error ("Trying to resize storage that is not resizable") names neither
        # the cause nor the fix
        raise DataError(
            f"images of different sizes in one batch ({_size(first)} and {_size(different)} pixels): the "
            "augmentation must bring every image to one size, e.g. augmentation=imagenet "
            "augmentation.resolution=224 (resize + crop), or add a Resize/crop to augmentation.train and augmentation.eval"
        )
    if first.dim() == 3 and all(
        image.shape == first.shape and image.dtype == first.dtype and image.permute(1, 2, 0).is_contiguous()
        for image in images
    ):
        # torch's own tensor collation: writes into shared memory when in a loader worker
        return collate_tensor_fn([image.permute(1, 2, 0) for image in images]).permute(0, 3, 1, 2)
    return default_collate(images)


def _size(image: torch.Tensor) -> str:
    return "x".join(str(n) for n in image.shape[-2:]) if image.dim() == 3 else str(tuple(image.shape))


def collate_skipping_bad(batch: list[tuple[torch.Tensor, int] | None]) -> tuple[torch.Tensor, torch.Tensor]:
    """Collate ``(image, label)`` items, leaving out the ones a dataset dropped (``None``:
    unreadable file)."""
    kept = [item for item in batch if item is not None]
    if not kept:  # every image of this eval batch was unreadable: an empty batch, not a crash
        return torch.empty((0, 3, 1, 1), dtype=torch.uint8), torch.empty(0, dtype=torch.int64)
    return stack_images([image for image, _ in kept]), torch.tensor([label for _, label in kept], dtype=torch.int64)


class FileListDataset(Dataset):
    """Images ``root/paths[i]`` with labels ``targets[i]``; items are ``(uint8 CHW tensor, label)``.

    Decoding goes through :class:`~litvision.datamodules.readers.jpeg_pipeline.SamplePipeline` (reduced-size
    JPEG decode where the transform allows it). Files that cannot be decoded follow
    ``bad_images.policy``: ``raise`` stops with the path; ``skip`` logs each file once and
    either replaces the sample by the next readable file (``replace_bad=True``, for training:
    batches keep their size) or drops it (``replace_bad=False``, for evaluation: no image is
    counted twice; :func:`collate_skipping_bad` removes it from the batch).

    Args:
        root: folder the relative ``paths`` start from.
        paths: relative paths (str or bytes), one per sample.
        targets: integer labels.
        transform: Albumentations pipeline (``t(image=...)["image"]``) or None.
        bad_images: shared log of unreadable files; created if None.
        file_ids: position of each sample in ``bad_images`` (kept through ``subset``).
        on_bad_image: policy for a new ``bad_images`` log.
        replace_bad: see above.
        id_prefix: prepended to ``paths`` to form each sample's id (:attr:`ids`), e.g.
            ``"train/"`` so that ids are paths relative to the dataset's ``data_dir``.
        max_image_pixels: images whose header claims more pixels are bad images, refused before
            decoding (:func:`~litvision.datamodules.readers.decode.check_image_size`).
    """

    collate_fn = staticmethod(collate_skipping_bad)

    def __init__(
        self,
        root: str | os.PathLike,
        paths: Sequence[str | bytes] | np.ndarray,
        targets: Sequence[int] | np.ndarray,
        transform: Callable[..., dict[str, Any]] | None = None,
        bad_images: BadImageLog | None = None,
        file_ids: np.ndarray | None = None,
        on_bad_image: BadImagePolicy = "skip",
        replace_bad: bool = True,
        id_prefix: str = "",
        max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS,
    ) -> None:
        paths = np.asarray(paths)
        if paths.dtype.kind == "U":
            paths = np.char.encode(paths, "utf-8", "surrogateescape")
        if len(paths) != len(targets):
            raise ValueError(f"{len(paths)} paths but {len(targets)} labels")
        self.root = os.fsencode(os.fspath(root))
        self.paths = paths
        self.targets = np.asarray(targets, dtype=np.int64)
        self.file_ids = np.arange(len(paths), dtype=np.int64) if file_ids is None else np.asarray(file_ids)
        self.bad_images = bad_images or BadImageLog(len(paths), on_bad_image)
        self.replace_bad = replace_bad
        self.id_prefix = id_prefix
        self.transform = transform
        self.max_image_pixels = max_image_pixels
        self.pipeline = SamplePipeline(transform, max_image_pixels)

    def __len__(self) -> int:
        return len(self.targets)

    @property
    def ids(self) -> np.ndarray:
        """Sample ids (``id_prefix`` + relative path, str); built on demand, not kept per sample."""
        return np.char.add(self.id_prefix, np.char.decode(self.paths, "utf-8", "surrogateescape"))

    def path(self, index: int) -> str:
        return os.fsdecode(os.path.join(self.root, self.paths[index]))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int] | None:
        self._reseed_in_new_worker()
        n = len(self)
        for attempt in range(MAX_REPLACEMENTS if self.replace_bad else 1):
            i = (index + attempt) % n
            file_id = int(self.file_ids[i])
            if self.bad_images.is_bad(file_id):
                continue
            path = os.path.join(self.root, self.paths[i])
            try:
                with open(path, "rb") as f:
                    data = f.read()
                image = self.pipeline(data)
            except BadImageError as e:
                self.bad_images.record(file_id, os.fsdecode(path), str(e))
                continue
            except OSError as e:  # vanished since indexing, permissions, I/O error
                self.bad_images.record(file_id, os.fsdecode(path), f"cannot read ({e})")
                continue
            return image_to_tensor(image), int(self.targets[i])
        if not self.replace_bad:
            return None
        raise BadImageError(
            f"{MAX_REPLACEMENTS} unreadable images in a row from {self.path(index)}: the dataset "
            "looks broken (see the warnings above for each file)."
        )

    def _reseed_in_new_worker(self) -> None:
        if reseed_once_per_worker(self, self.transform) and get_worker_info() is not None:
            # OpenCV's own thread pool only oversubscribes the cores the other workers use.
            cv2.setNumThreads(1)

    def _replace(self, **changes: Any) -> FileListDataset:
        args: dict[str, Any] = {
            "root": self.root,
            "paths": self.paths,
            "targets": self.targets,
            "transform": self.transform,
            "bad_images": self.bad_images,
            "file_ids": self.file_ids,
            "replace_bad": self.replace_bad,
            "id_prefix": self.id_prefix,
            "max_image_pixels": self.max_image_pixels,
        }
        args.update(changes)
        return FileListDataset(**args)

    def subset(self, indices: Sequence[int] | np.ndarray) -> FileListDataset:
        indices = np.asarray(indices, dtype=np.int64)
        return self._replace(paths=self.paths[indices], targets=self.targets[indices], file_ids=self.file_ids[indices])

    def with_transform(self, transform: Callable[..., dict[str, Any]] | None) -> FileListDataset:
        return self._replace(transform=transform)

    def for_evaluation(self) -> FileListDataset:
        """Same files, but unreadable ones are dropped from batches instead of replaced."""
        return self._replace(replace_bad=False)
