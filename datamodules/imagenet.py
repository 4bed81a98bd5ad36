"""ImageNet (ILSVRC-2012) from the on-disk layouts people actually have; nothing is downloaded.

The images are not redistributable: get them from image-net.org (or Kaggle's "ImageNet
Object Localization Challenge") and point ``dataset.data_dir`` at the folder holding
``train/`` and ``val/``. See :mod:`litvision.datamodules.readers.imagenet_index` for the supported val layouts.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from litvision.datamodules.class_folder import ClassFolderDataModule
from litvision.datamodules.readers.file_index import FileIndex, IndexSource, cached_index, digest, scan_flat_folder
from litvision.datamodules.readers.imagenet_index import (
    DEVKIT_DIRNAME,
    DEVKIT_GROUND_TRUTH,
    DEVKIT_META,
    KAGGLE_SOLUTION,
    detect_val_layout,
    image_root,
    read_devkit,
    read_devkit_meta,
    read_kaggle_solution,
    readable_names,
    shipped_class_names,
)

log = logging.getLogger(__name__)


class ImageNetDataModule(ClassFolderDataModule):
    """ILSVRC-2012 classification: ``ROOT/train/<wnid>/*.JPEG`` and the official val set.

    Class index = sorted wnids (the standard 0-999); class names are readable ("tench",
    "goldfish", ...) and become the per-class metric keys (``val/recall/tench``).

    Args:
        data_dir: ROOT (or the folder of Kaggle's download, holding ``ILSVRC/Data/CLS-LOC``).
        val_split / test_split: ``val`` (the official 50k validation images) or ``holdout``
            (a stratified ``val_fraction`` of train). Reporting on official val while also
            selecting checkpoints on it is the usual ImageNet convention; ``val_split=holdout
            test_split=val`` keeps the test number independent.
        val_layout: ``auto`` | ``folders`` | ``kaggle`` | ``devkit`` (see module docs).
        devkit_dir: the devkit folder; default ``ROOT/ILSVRC2012_devkit_t12``.
        kaggle_csv: Kaggle's labels; default ``ROOT/LOC_val_solution.csv``.
        **kwargs: see :class:`~litvision.datamodules.class_folder.ClassFolderDataModule`.

    Example (plain Lightning)::

        dm = ImageNetDataModule("/data/imagenet", val_split="val", test_split="val", batch_size=256)
    """

    def __init__(
        self,
        data_dir: str,
        val_split: str,
        test_split: str,
        val_layout: str = "auto",
        devkit_dir: str | None = None,
        kaggle_csv: str | None = None,
        **kwargs: Any,
    ) -> None:
        if "test" in (val_split, test_split):
            raise ValueError("ImageNet's test labels are not public: use 'val' or 'holdout' for val_split/test_split")
        super().__init__(data_dir=data_dir, val_split=val_split, test_split=test_split, **kwargs)
        self.val_layout = val_layout
        root = Path(self.data_dir).expanduser()
        self.devkit_dir = Path(devkit_dir).expanduser() if devkit_dir else root / DEVKIT_DIRNAME
        self.kaggle_csv = Path(kaggle_csv).expanduser() if kaggle_csv else root / KAGGLE_SOLUTION

    @property
    def image_root(self) -> Path:
        return image_root(Path(self.data_dir).expanduser())

    def build_index(self, split: str) -> FileIndex:
        if split != "val":
            return super().build_index(split)
        classes = self.index("train").classes
        val_dir = self.split_dir("val")
        layout = detect_val_layout(val_dir, classes, self.kaggle_csv, self.devkit_dir, self.val_layout)
        if layout == "folders":
            return super().build_index("val")
        if layout == "kaggle":
            files = [self.kaggle_csv]

            def labels() -> dict[str, str]:
                return read_kaggle_solution(self.kaggle_csv)
        else:
            files = [self.devkit_dir / DEVKIT_GROUND_TRUTH, self.devkit_dir / DEVKIT_META]

            def labels() -> dict[str, str]:
                return read_devkit(self.devkit_dir)[0]

        def build() -> tuple[FileIndex, IndexSource]:
            return scan_flat_folder(
                val_dir, labels(), classes, f"{layout} labels ({files[0]})", self.extensions, self.progress
            )

        # the label files and everything that maps their labels are part of the cache key
        return cached_index(
            self.index_cache(),
            f"imagenet_val:{layout}:{val_dir.resolve()}",
            build,
            extra=digest(classes) + f"|{self.extensions}",
            label_files=files,
        )

    def load_class_names(self) -> list[str]:
        wnids = self.index("train").classes
        extra = {}
        meta = self.devkit_dir / DEVKIT_META
        if meta.is_file() and not set(wnids) <= set(shipped_class_names()):
            extra = read_devkit_meta(meta)[1]
        return readable_names(wnids, extra)
