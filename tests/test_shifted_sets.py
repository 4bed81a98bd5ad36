"""The distribution-shift test sets, read from files generated in their published layouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from litvision.datamodules.readers.shifted_sets import IMAGENET_SUBSETS, imagenet_wnids
from litvision.datamodules.shifted import (
    CIFAR10_CLASSES,
    CIFAR10_1DataModule,
    CIFAR10CDataModule,
    ImageNetADataModule,
    ImageNetCDataModule,
    ImageNetRDataModule,
    ImageNetSketchDataModule,
    ImageNetV2DataModule,
)
from litvision.lightning_modules.metrics.class_subset import mask_logits, subset_mask
from litvision.utils.errors import ConfigError, DataError
from tests.helpers.shifted_files import CORRUPTION_ROWS, write_cifar10_1, write_cifar10_c, write_class_tree

QUIET = {"num_workers": 0, "batch_size": 4}


def split_of(dm):
    dm.prepare_data()
    dm.setup("test")
    return dm.splits.test


def test_cifar10_1_reads_the_published_files(tmp_path: Path) -> None:
    images, labels = write_cifar10_1(tmp_path, "v6")
    write_cifar10_1(tmp_path, "v4", n=21)  # both versions side by side, as in the repository
    test = split_of(CIFAR10_1DataModule(str(tmp_path), version="v6", **QUIET))
    assert len(test) == 20 and test.targets.tolist() == labels.tolist()
    assert np.array_equal(test.images, images)
    assert test.ids[3] == "cifar10.1_v6/3"
    assert len(split_of(CIFAR10_1DataModule(str(tmp_path), version="v4", **QUIET))) == 21
    assert CIFAR10_1DataModule(str(tmp_path), version="v6").class_names == CIFAR10_CLASSES


@pytest.mark.parametrize("version", [None, "v7", "v5"])
def test_cifar10_1_has_no_default_version(tmp_path: Path, version) -> None:
    write_cifar10_1(tmp_path, "v6")
    with pytest.raises(ConfigError, match="dataset.version=v6") as err:
        CIFAR10_1DataModule(str(tmp_path), version=version).check()
    assert "\n" not in str(err.value)


def test_cifar10_1_refuses_a_pickled_file(tmp_path: Path) -> None:
    write_cifar10_1(tmp_path, "v6")
    np.save(tmp_path / "cifar10.1_v6_labels.npy", np.array([object()] * 20), allow_pickle=True)
    with pytest.raises(DataError, match="not a plain .npy"):
        split_of(CIFAR10_1DataModule(str(tmp_path), version="v6", **QUIET))


def test_cifar10_1_is_test_only(tmp_path: Path) -> None:
    write_cifar10_1(tmp_path, "v6")
    dm = CIFAR10_1DataModule(str(tmp_path), version="v6", **QUIET)
    with pytest.raises(ConfigError, match="test-only"):
        dm.setup("fit")


def test_cifar10_c_picks_the_severity_blocks(tmp_path: Path) -> None:
    labels = write_cifar10_c(tmp_path)
    test = split_of(CIFAR10CDataModule(str(tmp_path), corruptions=["snow", "fog"], severities=[2, 5], **QUIET))
    assert len(test) == 2 * 2 * CORRUPTION_ROWS
    first = test.images[:, 0, :3, 0]  # severity, image number, corruption position
    assert first[:CORRUPTION_ROWS].tolist() == [[2, n, 1] for n in range(CORRUPTION_ROWS)]  # snow first, as asked
    assert first[CORRUPTION_ROWS, 0] == 5 and first[2 * CORRUPTION_ROWS, 2] == 0
    assert test.ids[CORRUPTION_ROWS + 1] == "snow/5/1"
    assert test.targets[:CORRUPTION_ROWS].tolist() == labels[CORRUPTION_ROWS : 2 * CORRUPTION_ROWS].tolist()


def test_cifar10_c_refuses_unknown_selections(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown"):
        CIFAR10CDataModule(str(tmp_path), corruptions=["fogg"]).check()
    with pytest.raises(ConfigError, match="1..5"):
        CIFAR10CDataModule(str(tmp_path), corruptions="fog", severities=6).check()
    assert len(CIFAR10CDataModule(str(tmp_path)).corruptions) == 15
    assert len(CIFAR10CDataModule(str(tmp_path), corruptions="all").corruptions) == 19


def test_imagenet_v2_integer_folders_are_class_indices(tmp_path: Path) -> None:
    root = tmp_path / "imagenetv2-matched-frequency-format-val"
    folders = ["0", "1", "2", "10", "100", "999"]  # a plain ImageFolder would sort these as strings
    write_class_tree(root, folders)
    dm = ImageNetV2DataModule(str(tmp_path), variant="matched-frequency", progress=False, **QUIET)
    test = split_of(dm)
    by_folder = {i.split("/")[1]: label for i, label in zip(test.ids.tolist(), test.targets.tolist(), strict=True)}
    assert by_folder == {f: int(f) for f in folders}
    assert dm.class_names[by_folder["0"]] == "tench" and imagenet_wnids()[0] == "n01440764"
    assert len(dm.class_names) == 1000
    with pytest.raises(ConfigError, match="variants"):
        ImageNetV2DataModule(str(tmp_path), variant=None).check()


def test_imagenet_c_reads_corruption_severity_wnid(tmp_path: Path) -> None:
    wnids = imagenet_wnids()
    for corruption in ("fog", "contrast"):
        for severity in (1, 3):
            write_class_tree(tmp_path / corruption / str(severity), [wnids[5], wnids[900]], suffix=".JPEG")
    test = split_of(ImageNetCDataModule(str(tmp_path), corruptions=["fog"], severities=[3], progress=False, **QUIET))
    assert len(test) == 4
    assert all(i.startswith("fog/3/") for i in test.ids.tolist())
    assert sorted(set(test.targets.tolist())) == [5, 900]


@pytest.mark.parametrize("module, name", [(ImageNetRDataModule, "imagenet_r"), (ImageNetADataModule, "imagenet_a")])
def test_imagenet_r_a_cover_200_classes(tmp_path: Path, module, name) -> None:
    wnids = imagenet_wnids()
    subset = IMAGENET_SUBSETS[name]
    root = tmp_path / name.replace("_", "-")
    write_class_tree(root, [wnids[subset[0]], wnids[subset[-1]]])
    dm = module(str(tmp_path), progress=False, **QUIET)
    test = split_of(dm)
    assert sorted(set(test.targets.tolist())) == [subset[0], subset[-1]]
    assert len(dm.class_subset) == 200 and len(dm.class_names) == 1000
    outside = next(i for i in range(1000) if i not in subset)
    write_class_tree(root, [wnids[outside]])
    with pytest.raises(DataError, match="outside its 200 classes"):
        split_of(module(str(tmp_path), progress=False, index_cache_dir=str(tmp_path / "cache"), **QUIET))


def test_imagenet_sketch(tmp_path: Path) -> None:
    wnids = imagenet_wnids()
    write_class_tree(tmp_path / "sketch", [wnids[0], wnids[999]], suffix=".JPEG")
    test = split_of(ImageNetSketchDataModule(str(tmp_path), progress=False, **QUIET))
    assert sorted(set(test.targets.tolist())) == [0, 999]


def test_masking_scores_over_the_subset() -> None:
    """The argmax of masked logits is the argmax over the subset's columns, mapped back (the authors' protocol)."""
    subset = IMAGENET_SUBSETS["imagenet_a"]
    logits = torch.randn(64, 1000, generator=torch.Generator().manual_seed(0))
    masked = mask_logits(logits, subset_mask(subset, 1000))
    reference = torch.as_tensor(subset)[logits[:, list(subset)].argmax(dim=1)]
    assert torch.equal(masked.argmax(dim=1), reference)
    probabilities = masked.softmax(dim=1)
    assert torch.allclose(probabilities.sum(dim=1), torch.ones(64))
    assert probabilities[:, [i for i in range(1000) if i not in subset]].max() == 0
    assert not torch.equal(logits.argmax(dim=1), reference)  # unmasked, many predictions fall outside
