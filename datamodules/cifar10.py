"""CIFAR-10 from the official "python version" pickles, read without torchvision."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from litvision.datamodules.datasets.array_dataset import ArrayDataset
from litvision.datamodules.map_style import ClassificationDataModule
from litvision.datamodules.readers.cifar_pickle import CIFAR10_DIRNAME, load_class_names, load_split, missing_files
from litvision.utils.errors import MissingDataError


class CIFAR10DataModule(ClassificationDataModule):
    """CIFAR-10: ``<data_dir>/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}``.

    ``data_dir`` may also be the ``cifar-10-batches-py`` folder itself (every step resolves it
    the same way: :func:`~litvision.datamodules.readers.cifar_pickle.resolve_cifar_dir`).

    The five training batches form the pool for the stratified train/val split and
    ``test_batch`` is the test set. A folder already present is used as is (no checksum:
    subsets and re-packs are legitimate); otherwise ``prepare_data`` downloads and verifies
    the official archive when ``download=True``.

    Example (plain Lightning, no Hydra)::

        dm = CIFAR10DataModule(data_dir="data/", batch_size=256)
        trainer.fit(model, datamodule=dm)
    """

    def __init__(self, data_dir: str = "data/", download: bool = True, **kwargs: Any) -> None:
        super().__init__(data_dir=data_dir, **kwargs)
        self.download = download
        if not download and missing_files(self.root):
            # at construction, before anything is read: nothing would fill the folder later
            raise MissingDataError(
                f"dataset.data_dir={data_dir} holds no complete {CIFAR10_DIRNAME}/ and dataset.download=false: "
                f"set dataset.data_dir=PATH where PATH/{CIFAR10_DIRNAME}/ exists, or dataset.download=true"
            )

    @property
    def root(self) -> Path:
        return Path(self.data_dir)

    def prepare_data(self) -> None:
        """Runs on one process per node: fetch the official archive if the folder is missing."""
        from litvision.datamodules.readers.cifar_download import ensure_cifar10

        ensure_cifar10(self.root, download=self.download)

    def load_class_names(self) -> list[str]:
        return load_class_names(self.root)

    def load_train_pool(self) -> ArrayDataset:
        images, labels = load_split(self.root, train=True)
        return ArrayDataset(images, labels, ids=cifar_ids("train", len(labels)))

    def load_test(self) -> ArrayDataset:
        images, labels = load_split(self.root, train=False)
        return ArrayDataset(images, labels, ids=cifar_ids("test", len(labels)))


def cifar_ids(split: str, n: int) -> np.ndarray:
    """``<split>/<n>``: n = position in the official file order (data_batch_1..5 concatenated)."""
    return np.char.add(f"{split}/", np.arange(n).astype(str))
