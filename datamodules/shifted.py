"""Test-only DataModules for the published distribution-shift sets (CIFAR-10.1, CIFAR-10-C, ImageNet-V2/-C/-R/-A/-Sketch).

Each is a dataset option (``eval.py dataset=cifar10_1 ...``, ``predict.py dataset=...``) and an
extra test set of a run (``test_sets=[cifar10_1,cifar10_c]``, reported as ``cifar10_1/acc_top1``,
...). They have a test split only: fitting on one is refused. Their classes are those of the
dataset they shift (CIFAR-10's ten, ImageNet's 1,000 in wnid order), so a checkpoint trained on
the original is evaluated on them as is; ImageNet-R and -A hold 200 of the 1,000 classes and say
which in :attr:`class_subset`: the model masks the other 800 logits and is scored over the 200.
File layouts and download addresses: :mod:`litvision.datamodules.readers.shifted_sets`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from litvision.datamodules.base import Splits
from litvision.datamodules.class_folder import ClassFolderDataModule
from litvision.datamodules.datasets.array_dataset import ArrayDataset
from litvision.datamodules.map_style import ClassificationDataModule
from litvision.datamodules.readers.file_index import FileIndex, cached_index, digest, make_index, scan_class_folders
from litvision.datamodules.readers.imagenet_index import readable_names
from litvision.datamodules.readers.shifted_sets import (
    CORRUPTIONS,
    EXTRA_CORRUPTIONS,
    IMAGENET_SUBSETS,
    check_selection,
    check_subset_folders,
    cifar10_1_files,
    imagenet_v2_dir,
    imagenet_wnids,
    load_cifar10_1,
    load_cifar10_c,
)
from litvision.utils.errors import ConfigError, MissingDataError

log = logging.getLogger(__name__)

# CIFAR-10's label order (batches.meta): CIFAR-10.1 and CIFAR-10-C use the same
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def corruption_list(corruptions: str | Sequence[str]) -> list[str]:
    """``all15`` (the benchmark's 15), ``all`` (+ the 4 extra), one name or a list of names."""
    if isinstance(corruptions, str):
        corruptions = {"all15": CORRUPTIONS, "all": CORRUPTIONS + EXTRA_CORRUPTIONS}.get(corruptions, [corruptions])
    return [str(c) for c in corruptions]


def severity_list(severities: int | Sequence[int]) -> list[int]:
    return [int(severities)] if isinstance(severities, (int, str)) else [int(s) for s in severities]


def require_files(paths: Sequence[Path], what: str) -> None:
    """One line naming the missing files of a set and where it is published (docs/robustness.md)."""
    missing = [str(p) for p in paths if not Path(p).is_file()]
    if missing:
        raise MissingDataError(
            f"{what}: {missing[0]} not found{f' (and {len(missing) - 1} more)' if len(missing) > 1 else ''}; set "
            "dataset.data_dir (test_sets.<name>.data_dir) to the folder holding its files, downloaded as docs/robustness.md says"
        )


class TestOnlyMixin:
    """A DataModule with a test split only (val = test, so ``trainer.validate`` works too).

    ``name`` is the metric prefix of the set when it is an extra test set of a run
    (``<name>/acc_top1``); ``class_subset`` the class indices the set covers, None for all.
    """

    name: str | None = "shifted"  # LightningDataModule's attribute (Optional there), set by every subclass
    class_subset: tuple[int, ...] | None = None
    # provided by the map-style DataModule this is mixed into (map_style.py)
    load_test: Callable[[], Any]
    source_split: Callable[[str], Any]

    @property
    def metric_prefix(self) -> str:
        return f"{self.name}/"

    def check(self) -> None:
        """Refuse, in one line, a missing option or missing files: before a training run that tests on the
        set (tasks/test_sets.py), and in ``prepare_data``. Not at construction (a config is built to be checked)."""

    def prepare_data(self) -> None:
        self.check()
        super().prepare_data()  # type: ignore[misc]

    def load_train_pool(self) -> Any:
        return self.load_test().subset([])

    def build_splits(self) -> Splits:
        test = self.source_split("test")
        return Splits(train=test.subset([]), val=test, test=test)

    def setup(self, stage: str | None = None) -> None:
        self.check()
        if stage == "fit":
            raise ConfigError(
                f"dataset={self.name} is a test-only set: evaluate on it (eval.py dataset={self.name} ...) or add it "
                f"to a training run's test sets (test_sets=[{self.name}]); train on the dataset it shifts"
            )
        super().setup(stage)  # type: ignore[misc]


class CIFAR10_1DataModule(TestOnlyMixin, ClassificationDataModule):
    """CIFAR-10.1 (``dataset.version=v6|v4``, required): ``<data_dir>/cifar10.1_<version>_{data,labels}.npy``.

    Sample ids are ``cifar10.1_<version>/<n>`` (n = row in the file).
    """

    name = "cifar10_1"

    def __init__(self, data_dir: str, version: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("val_fraction", 0.0)
        super().__init__(data_dir=data_dir, **kwargs)
        self.version = version

    def check(self) -> None:
        require_files(cifar10_1_files(self.data_dir, self.version), "CIFAR-10.1")

    def load_class_names(self) -> list[str]:
        return list(CIFAR10_CLASSES)

    def load_test(self) -> ArrayDataset:
        images, labels = load_cifar10_1(self.data_dir, self.version)
        ids = np.char.add(f"cifar10.1_{self.version}/", np.arange(len(labels)).astype(str))
        return ArrayDataset(images, labels, ids=ids)


class CIFAR10CDataModule(TestOnlyMixin, ClassificationDataModule):
    """CIFAR-10-C: ``<data_dir>/<corruption>.npy`` (5 severities x 10,000 rows) + ``labels.npy``.

    Args:
        corruptions: ``all15`` (default: the benchmark's 15), ``all`` (+ gaussian_blur, saturate,
            spatter, speckle_noise), a name or a list of names.
        severities: a severity 1-5 or a list (default all five).

    The chosen (corruption, severity) blocks are evaluated together as one test set; ids are
    ``<corruption>/<severity>/<n>``, n = the CIFAR-10 test image the row corrupts (``test/<n>``).
    """

    name = "cifar10_c"

    def __init__(
        self,
        data_dir: str,
        corruptions: str | Sequence[str] = "all15",
        severities: int | Sequence[int] = (1, 2, 3, 4, 5),
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("val_fraction", 0.0)
        super().__init__(data_dir=data_dir, **kwargs)
        self.corruptions = corruption_list(corruptions)
        self.severities = severity_list(severities)

    def check(self) -> None:
        check_selection(self.corruptions, self.severities, CORRUPTIONS + EXTRA_CORRUPTIONS)
        root = Path(self.data_dir).expanduser()
        require_files([root / f"{c}.npy" for c in self.corruptions] + [root / "labels.npy"], "CIFAR-10-C")

    def load_class_names(self) -> list[str]:
        return list(CIFAR10_CLASSES)

    def load_test(self) -> ArrayDataset:
        images, labels, ids = [], [], []
        for corruption in self.corruptions:
            block, block_labels, block_ids = load_cifar10_c(self.data_dir, corruption, self.severities)
            images.append(block)
            labels.append(block_labels)
            ids.append(block_ids)
        return ArrayDataset(np.concatenate(images), np.concatenate(labels), ids=np.concatenate(ids))


class ImageFolderShift(TestOnlyMixin, ClassFolderDataModule):
    """Base of the ImageNet shift sets: image files labelled in ImageNet's 1,000 classes.

    Decoding, bad images, pixel budget and the index cache are the class folders' (``dataset.*``
    options of conf/dataset/_image_files.yaml). Class names are ImageNet's readable names in wnid
    order, as an ImageNet checkpoint has them; a subclass says where the images are (:meth:`scan`).
    """

    def __init__(self, data_dir: str, **kwargs: Any) -> None:
        super().__init__(data_dir=data_dir, val_split="test", test_split="test", **kwargs)

    def check(self) -> None:
        if not Path(self.data_dir).expanduser().is_dir():
            raise MissingDataError(f"dataset.data_dir={self.data_dir} does not exist: {self.layout_hint()}")

    def needed_splits(self) -> list[str]:
        return ["test"]

    def load_class_names(self) -> list[str]:
        return readable_names(imagenet_wnids())

    def build_index(self, split: str) -> FileIndex:
        root = Path(self.data_dir).expanduser()
        if not root.is_dir():
            raise MissingDataError(f"dataset.data_dir={root} does not exist: {self.layout_hint()}")
        return self.scan(root)

    def layout_hint(self) -> str:
        return "see docs/robustness.md for the layout and where to download it"

    def scan_folder(self, folder: Path, classes: Sequence[str]) -> FileIndex:
        """``folder/<class>/<image>`` labelled by the position of ``<class>`` in ``classes`` (cached)."""
        if not folder.is_dir():
            raise MissingDataError(f"{folder} does not exist: {self.layout_hint()}")
        return cached_index(
            self.index_cache(),
            f"{self.name}:{folder.resolve()}",
            lambda: scan_class_folders(folder, classes, self.extensions, self.progress),
            extra=digest(classes) + f"|{self.extensions}",
        )

    def scan(self, root: Path) -> FileIndex:
        """The wnid folders directly under ``root``."""
        return self.scan_folder(root, imagenet_wnids())


class ImageNetV2DataModule(ImageFolderShift):
    """ImageNet-V2 (``dataset.variant=matched-frequency|threshold-0.7|top-images``):
    ``imagenetv2-<variant>-format-val/<k>/*.jpeg``, ``k`` = class index 0..999 (folder ``0`` is
    n01440764, tench). ``data_dir`` is that folder or the one holding it."""

    name = "imagenet_v2"

    def __init__(self, data_dir: str, variant: str | None = None, **kwargs: Any) -> None:
        self.variant = variant
        super().__init__(data_dir=data_dir, **kwargs)

    def check(self) -> None:
        imagenet_v2_dir(self.data_dir, self.variant)  # refuses a missing or unknown variant
        super().check()

    def scan(self, root: Path) -> FileIndex:
        # the folder names are integers: label = int(name), never the position of the name sorted as a string
        return self.scan_folder(imagenet_v2_dir(root, self.variant), [str(k) for k in range(1000)])


class ImageNetCDataModule(ImageFolderShift):
    """ImageNet-C: ``<data_dir>/<corruption>/<severity>/<wnid>/*.JPEG``; ``corruptions`` and
    ``severities`` as for :class:`CIFAR10CDataModule`. Ids: ``<corruption>/<severity>/<wnid>/<file>``."""

    name = "imagenet_c"

    def __init__(
        self,
        data_dir: str,
        corruptions: str | Sequence[str] = "all15",
        severities: int | Sequence[int] = (1, 2, 3, 4, 5),
        **kwargs: Any,
    ) -> None:
        super().__init__(data_dir=data_dir, **kwargs)
        self.corruptions = corruption_list(corruptions)
        self.severities = severity_list(severities)

    def check(self) -> None:
        check_selection(self.corruptions, self.severities, CORRUPTIONS + EXTRA_CORRUPTIONS)
        super().check()

    def scan(self, root: Path) -> FileIndex:
        paths: list[str] = []
        labels: list[np.ndarray] = []
        for corruption in self.corruptions:
            for severity in self.severities:
                part = self.scan_folder(root / corruption / str(severity), imagenet_wnids())
                paths.extend(f"{corruption}/{severity}/{name}" for name in part.names())
                labels.append(part.labels)
        return make_index(str(root), paths, np.concatenate(labels).tolist(), imagenet_wnids())


class ImageNetSubsetShift(ImageFolderShift):
    """ImageNet-R / ImageNet-A: 200 wnid folders; the model is scored over those 200 classes."""

    name: str  # imagenet_r or imagenet_a: the key of IMAGENET_SUBSETS

    def __init__(self, data_dir: str, **kwargs: Any) -> None:
        super().__init__(data_dir=data_dir, **kwargs)
        self.class_subset = IMAGENET_SUBSETS[self.name]

    def scan(self, root: Path) -> FileIndex:
        nested = root / self.name.replace("_", "-")  # the archive unpacks into imagenet-r/ or imagenet-a/
        folder = nested if nested.is_dir() else root
        index = self.scan_folder(folder, imagenet_wnids())
        check_subset_folders(sorted({index.classes[label] for label in set(index.labels.tolist())}), self.name)
        return index


class ImageNetRDataModule(ImageNetSubsetShift):
    """ImageNet-R (renditions): ``imagenet-r/<wnid>/*.jpg``, 200 classes."""

    name = "imagenet_r"


class ImageNetADataModule(ImageNetSubsetShift):
    """ImageNet-A (natural adversarial examples): ``imagenet-a/<wnid>/*.jpg``, 200 classes."""

    name = "imagenet_a"


class ImageNetSketchDataModule(ImageFolderShift):
    """ImageNet-Sketch: ``sketch/<wnid>/*.JPEG`` (or the wnid folders directly in ``data_dir``), 1,000 classes."""

    name = "imagenet_sketch"

    def scan(self, root: Path) -> FileIndex:
        nested = root / "sketch"
        return self.scan_folder(nested if nested.is_dir() else root, imagenet_wnids())
