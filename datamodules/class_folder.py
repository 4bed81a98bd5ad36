"""Any image dataset stored as class folders: ``root/{train,val,test}/<class>/<image>``."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from litvision.datamodules.base import Splits
from litvision.datamodules.datasets.file_dataset import FileListDataset
from litvision.datamodules.map_style import ClassificationDataModule
from litvision.datamodules.readers.decode import (
    DEFAULT_MAX_IMAGE_PIXELS,
    POLICIES,
    BadImageLog,
    BadImagePolicy,
    check_pixel_budget,
)
from litvision.datamodules.readers.file_index import (
    IMAGE_EXTENSIONS,
    FileIndex,
    IndexCache,
    cached_index,
    digest,
    scan_class_folders,
)
from litvision.datamodules.sampling.splits import stratified_split

log = logging.getLogger(__name__)

SPLIT_SOURCES = ("val", "test", "holdout")


class ClassFolderDataModule(ClassificationDataModule):
    """Images in class folders: ``root/train/<class>/*``, ``root/val/<class>/*`` (and ``root/test/<class>/*``).

    Class index = position of the folder name in the sorted training folders. The file index
    is built once and cached (see :mod:`litvision.datamodules.readers.file_index`); decoding is robust and uses
    reduced-size JPEG decoding where the augmentation allows (:mod:`litvision.datamodules.readers.jpeg_pipeline`).

    Args:
        data_dir: the root holding ``train/`` (and ``val/``, ``test/`` as used).
        val_split / test_split: which data validates and which tests; there is no default,
            the choice changes what the numbers mean. ``val`` = ``root/val``, ``test`` =
            ``root/test``, ``holdout`` = a stratified ``val_fraction`` of ``root/train``
            (removed from training, fixed by ``split_seed``).
        num_workers: loader processes per device, or ``auto`` (:func:`default_num_workers`).
        on_bad_image: ``skip`` (default: an unreadable file is logged once, counted, and
            replaced in training / dropped in evaluation) or ``raise`` (stop with its path).
        max_image_pixels: an image whose header claims more pixels (or sides more than 100:1)
            is a bad image, refused before it is decoded; None lifts the pixel budget.
        index_cache_dir: where file indices are cached; None = the user cache
            (``~/.cache/litvision/index``, :func:`~litvision.datamodules.readers.file_index.user_cache_dir`).
        extensions: file extensions counted as images (case-insensitive).
        progress: show a progress bar while indexing.
        **kwargs: see :class:`~litvision.datamodules.map_style.ClassificationDataModule`.
    """

    def __init__(
        self,
        data_dir: str,
        val_split: str,
        test_split: str,
        num_workers: int | str = "auto",
        on_bad_image: BadImagePolicy = "skip",
        max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS,
        index_cache_dir: str | None = None,
        extensions: Sequence[str] = IMAGE_EXTENSIONS,
        progress: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(data_dir=data_dir, num_workers=num_workers, **kwargs)
        for name, value in (("val_split", val_split), ("test_split", test_split)):
            if value not in SPLIT_SOURCES:
                raise ValueError(f"{name} must be one of {SPLIT_SOURCES}, got {value!r}")
        if on_bad_image not in POLICIES:
            raise ValueError(f"on_bad_image must be one of {POLICIES}, got {on_bad_image!r}")
        self.train_on_eval_preprocessing_if_unset()  # e.g. debug=overfit (augmentation.train=null)
        self.val_split = val_split
        self.test_split = test_split
        self.on_bad_image = on_bad_image
        self.max_image_pixels = check_pixel_budget(max_image_pixels)
        self.index_cache_dir = index_cache_dir
        self.extensions = tuple(e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions)
        self.progress = progress
        self._indices: dict[str, FileIndex] = {}
        self._pools: dict[str, FileListDataset] = {}
        # One scan per job, not one per node: only global rank 0 indexes (and writes the index
        # cache) in prepare_data; the other ranks get its indices in setup (_share_indices).
        self.prepare_data_per_node = False

    # ---- where the files are (subclasses override) -------------------------------------
    @property
    def image_root(self) -> Path:
        return Path(self.data_dir).expanduser()

    def split_dir(self, split: str) -> Path:
        return self.image_root / split

    def build_index(self, split: str) -> FileIndex:
        """Index ``root/<split>/<class>/*``; val/test folders are labelled in train's class space."""
        split_dir = self.split_dir(split)
        if not split_dir.is_dir():
            raise FileNotFoundError(
                f"{split_dir} does not exist. Expected {split_dir}/<class>/<image>; check dataset.data_dir "
                f"or choose another source with dataset.val_split / dataset.test_split ({SPLIT_SOURCES})."
            )
        classes = None if split == "train" else self.index("train").classes
        return cached_index(
            self.index_cache(),
            f"class_folders:{split_dir.resolve()}",
            lambda: scan_class_folders(split_dir, classes, self.extensions, self.progress),
            extra=digest(classes or []) + f"|{self.extensions}",
        )

    # ---- indices, pools, splits --------------------------------------------------------
    def index_cache(self) -> IndexCache:
        return IndexCache(self.index_cache_dir, self.image_root)

    def index(self, split: str) -> FileIndex:
        if split not in self._indices:
            self._indices[split] = self.build_index(split)
        return self._indices[split]

    def needed_splits(self) -> list[str]:
        return ["train"] + sorted({s for s in (self.val_split, self.test_split) if s != "holdout"})

    def prepare_data(self) -> None:
        """Index (or check the cached indices of) every split the run uses: global rank 0 only."""
        for split in self.needed_splits():
            self.index(split)

    def setup(self, stage: str | None = None) -> None:
        if self.splits is None:
            self._share_indices()
        super().setup(stage)

    def _share_indices(self) -> None:
        """Under DDP, every rank takes global rank 0's indices (one broadcast, ~50 MB for ImageNet):
        on a shared filesystem the tree is listed once per job, not by every node or, where the
        cache cannot be written (read-only data and home, a tree changed seconds ago), every rank."""
        trainer = getattr(self, "trainer", None)
        if trainer is None or trainer.world_size == 1:
            return
        indices = {split: self.index(split) for split in self.needed_splits()} if trainer.global_rank == 0 else None
        self._indices = trainer.strategy.broadcast(indices, src=0)

    def load_class_names(self) -> list[str]:
        return self.index("train").classes

    def pool(self, split: str) -> FileListDataset:
        """All images of ``split``, without transforms, sharing one bad-image log."""
        if split not in self._pools:
            index = self.index(split)
            pool = FileListDataset(
                index.root,
                index.paths,
                index.labels,
                bad_images=BadImageLog(len(index), self.on_bad_image, split),
                id_prefix=relative_id_prefix(index.root, self.data_dir),
                max_image_pixels=self.max_image_pixels,
            )
            self._pools[split] = self.without_excluded(pool, split)
        return self._pools[split]

    def source_split(self, name: str) -> FileListDataset:
        """The folder ``name`` (train/val/test) before any hold-out, minus ``exclude_ids``."""
        return self.pool(name)

    def build_splits(self) -> Splits:
        train = self.pool("train")
        holdout: FileListDataset | None = None
        if "holdout" in (self.val_split, self.test_split):
            train_idx, holdout_idx = stratified_split(train.targets, self.val_fraction, self.split_seed)
            # (an empty or too small holdout is refused by check_split_sizes, with split_size_hint)
            train, holdout = train.subset(train_idx), train.subset(holdout_idx).for_evaluation()

        def source(name: str) -> FileListDataset:
            if name == "holdout":
                assert holdout is not None  # made above whenever a split is the holdout
                return holdout
            return self.pool(name).for_evaluation()

        val = source(self.val_split)
        test = val if self.test_split == self.val_split else source(self.test_split)
        if self.test_split == self.val_split:
            log.warning(
                "val_split and test_split are both %r: checkpoint selection sees the test images, so "
                "test metrics are not an independent estimate (the usual ImageNet convention).",
                self.val_split,
            )
        return Splits(train=train, val=val, test=test)

    def split_size_hint(self, name: str) -> str:
        source = {"val": self.val_split, "test": self.test_split}.get(name)
        if source == "holdout":
            return (
                f"it is the holdout, dataset.val_fraction={self.val_fraction} of train rounded per class: raise "
                f"dataset.val_fraction or use dataset.{name}_split=val"
            )
        if source is not None:
            return f"it is {self.split_dir(source)}: add images there or use dataset.{name}_split=holdout"
        return super().split_size_hint(name)

    def bad_image_counts(self) -> dict[str, int]:
        """Unreadable files met so far, per split (the epoch log reports these)."""
        return {split: pool.bad_images.count() for split, pool in self._pools.items()}


def relative_id_prefix(split_root: str | os.PathLike, data_dir: str | os.PathLike) -> str:
    """What makes a path relative to a split folder a sample id: relative to ``data_dir``.

    e.g. ``train/`` for ``ROOT/train``, ``ILSVRC/Data/CLS-LOC/val/`` for Kaggle's ImageNet tree.
    """
    rel = os.path.relpath(os.path.realpath(split_root), os.path.realpath(Path(data_dir).expanduser()))
    return "" if rel == "." else Path(rel).as_posix() + "/"
