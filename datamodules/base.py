"""The thin base every DataModule shares: the global batch, processes, auto workers, normalise after transfer.

:class:`DataModuleBase` knows nothing about where samples come from or how they are split: the
map-style DataModules build on :class:`~litvision.datamodules.map_style.ClassificationDataModule`
(splits, samplers, long tail, exclusions), the shard DataModule streams its own splits. What both
need is here, once: ``batch_size`` is the *global* batch (each of the ``world_size`` processes
loads ``batch_size // world_size``), ``num_workers: auto`` is resolved when the device count is
known, train/eval transforms and a per-batch normalisation on the device after transfer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import lightning as L

from litvision.datamodules.transforms.pipeline import BatchNormalize
from litvision.utils.cpu import loader_workers_per_device
from litvision.utils.errors import ConfigError

log = logging.getLogger(__name__)


def default_num_workers(devices_per_node: int) -> int:
    """``num_workers: auto``: usable CPU cores per device on this node, minus one (max 16)."""
    return loader_workers_per_device(devices_per_node)


@dataclass
class Splits:
    """The three datasets a run uses; each exposes ``targets`` and ``with_transform``."""

    train: Any
    val: Any
    test: Any

    def named(self) -> list[tuple[str, Any]]:
        return [("train", self.train), ("val", self.val), ("test", self.test)]

    def require(self, attribute: str, needed_for: str) -> None:
        """Refuse, in one line, splits without ``attribute`` (``needed_for`` says who needs it and the fix)."""
        for name, split in self.named():
            if not hasattr(split, attribute):
                raise ConfigError(f"the {name} split ({type(split).__name__}) has no `{attribute}`: {needed_for}")


class DataModuleBase(L.LightningDataModule):
    """Base of every litvision DataModule (see the module docstring).

    Args:
        data_dir: where the data is (its layout depends on the subclass).
        batch_size: the *global* batch size; each of the ``world_size`` processes loads
            ``batch_size // world_size`` so a recipe means the same thing on 1 or 8 GPUs.
        num_workers: DataLoader worker processes per device, or ``auto``
            (:func:`default_num_workers`, resolved in :meth:`resolve_num_workers` once the
            device count is known).
        seed: seed of the training order (the sampler or the shard stream).
        train_transform / eval_transform: Albumentations pipelines (or any callable with the
            ``transform(image=...)["image"]`` protocol); train augmentation never reaches
            val/test.
        normalize: per-batch normalisation (``BatchNormalize`` or a ``{mean, std}`` mapping)
            applied on the device after transfer; None to skip.
        pin_memory / persistent_workers / drop_last: as for a torch DataLoader.
    """

    def __init__(
        self,
        data_dir: str = "data/",
        batch_size: int = 128,
        num_workers: int | str = 2,
        seed: int = 0,
        train_transform: Callable | None = None,
        eval_transform: Callable | None = None,
        normalize: BatchNormalize | Mapping[str, Any] | None = None,
        pin_memory: bool = True,
        persistent_workers: bool = True,
        drop_last: bool = False,
    ) -> None:
        super().__init__()
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(
                f"dataset.batch_size={batch_size}: must be an integer >= 1 (the global batch), e.g. dataset.batch_size=128"
            )
        if num_workers not in ("auto", None) and (
            isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0
        ):
            raise ConfigError(
                f"dataset.num_workers={num_workers}: must be an integer >= 0 or auto, e.g. dataset.num_workers=2"
            )
        self.data_dir = str(data_dir)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.train_transform = train_transform
        self.eval_transform = eval_transform
        self.normalize = BatchNormalize(**normalize) if isinstance(normalize, Mapping) else normalize
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers
        self.drop_last = drop_last
        self.splits: Splits | None = None
        self._class_names: list[str] | None = None
        self.test_hook: Any = None

    # ---- what a subclass provides -------------------------------------------------
    def load_class_names(self) -> list[str]:
        raise NotImplementedError

    # ---- shared set-up --------------------------------------------------------------
    def resolve_num_workers(self) -> None:
        """``num_workers: auto`` -> a number, once the trainer says how many devices share this node."""
        if self.num_workers in ("auto", None):
            trainer = getattr(self, "trainer", None)
            self.num_workers = default_num_workers(trainer.num_devices if trainer is not None else 1)
            log.info("num_workers=auto: %d loader processes per device", self.num_workers)

    def train_on_eval_preprocessing_if_unset(self) -> None:
        """No train transform but an eval one (e.g. ``debug=overfit``): images of different sizes still
        need resizing to be batched, so "no augmentation" means the eval preprocessing."""
        if self.train_transform is None and self.eval_transform is not None:
            log.info("train_transform is None: training images get the eval preprocessing")
            self.train_transform = self.eval_transform

    def set_test_hook(self, hook: Any) -> None:
        """Test batches become ``(images, labels, variants)``: every test image under each of ``len(hook)``
        variants, ``hook(image, sample_id, variant)`` applied in the loader workers to the decoded uint8
        HxWxC image after the eval transform, before normalisation
        (:class:`~litvision.datamodules.datasets.variants.TestHook`; ``robustness=corruptions``). None: plain."""
        self.test_hook = hook

    @property
    def class_names(self) -> list[str]:
        if self._class_names is None:
            self._class_names = list(self.load_class_names())
        return self._class_names

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Normalise uint8 images once per batch, on the device."""
        images, *rest = batch  # (images, labels), or (images, labels, group codes) with groups=PATH
        if self.normalize is not None:
            images = self.normalize(images)
        return (images, *rest)

    def per_device_batch_size(self) -> int:
        world_size, _ = self._world()
        if self.batch_size % world_size:
            raise ValueError(
                f"batch_size={self.batch_size} is the global batch and must be divisible by the "
                f"world size ({world_size} processes); pick e.g. dataset.batch_size="
                f"{max(world_size, self.batch_size // world_size * world_size)}"
            )
        return self.batch_size // world_size

    def _world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 1, 0
        return trainer.world_size, trainer.global_rank

    def _require_setup(self) -> None:
        if self.splits is None:
            raise RuntimeError(f"{type(self).__name__}.setup() must run before the dataloaders are requested")
