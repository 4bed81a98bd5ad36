"""``dataset.exclude_ids=PATH``: the listed samples leave every split, the others all stay.

Checked on the splits the DataModules build (CIFAR, CIFAR-LT, class folders, ImageNet with a
flat val folder) and on what the loaders of a real ``train.py`` run hand each rank, single
process and under ``trainer=ddp_sim`` (tests/helpers/id_recorder.py).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from litvision.datamodules.cifar10 import CIFAR10DataModule
from litvision.datamodules.class_folder import ClassFolderDataModule
from litvision.datamodules.imagenet import ImageNetDataModule
from litvision.datamodules.sampling.exclusions import read_exclusion_file
from litvision.utils.errors import DataError, MissingDataError
from tests.helpers.fake_cifar import write_fake_cifar
from tests.helpers.imagenet_trees import build_train, build_val, generated_samples
from tests.helpers.run_helpers import TINY_MODEL, run_script

# ---- the file format --------------------------------------------------------------------


def test_file_format_comments_blank_lines_duplicates_and_bom(tmp_path: Path) -> None:
    path = tmp_path / "ex.txt"
    path.write_bytes("\ufeff# written by hand\n\ntrain/3\n  test/7  \n# another\ntrain/3\nval/n0/x y.JPEG\n".encode())
    assert read_exclusion_file(path) == ["train/3", "test/7", "val/n0/x y.JPEG"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"a,b,kind,distance\ntrain/1,test/2,exact,0\n", "line 1: .*CSV header"),
        (b"train/1\n/abs/path.JPEG\n", "line 2: .*normalised relative id"),
        (b"train/../test/1\n", "line 1: .*normalised relative id"),
        (b"train\\n01\\x.JPEG\n", "line 1: .*backslash"),
        (b"train/1\ttest/1\n", "line 1: .*tab"),
        (b"\x89PNG\r\n\x1a\n\0\0\0", "binary file"),
        (b"train/\xff\xfe1\n", "not UTF-8"),
    ],
)
def test_malformed_files_are_refused_with_the_line(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "ex.txt"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        read_exclusion_file(path)


def test_missing_file_names_the_override(cifar_root: Path, tmp_path: Path) -> None:
    with pytest.raises(MissingDataError, match="dataset.exclude_ids=.*no such file"):
        cifar_dm(cifar_root, exclude_ids=str(tmp_path / "nope.txt")).setup()


# ---- the DataModules' splits --------------------------------------------------------------


def split_ids(dm) -> dict[str, list[str]]:
    return {name: [str(i) for i in getattr(dm.splits, name).ids] for name in ("train", "val", "test")}


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cifar_ex")
    write_fake_cifar(root, n_train_per_class=10, n_test_per_class=4, seed=3)
    return root


def cifar_dm(root: Path, **kwargs) -> CIFAR10DataModule:
    return CIFAR10DataModule(
        data_dir=str(root), batch_size=8, num_workers=0, download=False, val_fraction=0.2, **kwargs
    )


def test_cifar_listed_ids_leave_every_split_and_nothing_else_does(cifar_root: Path, tmp_path: Path, caplog) -> None:
    full = cifar_dm(cifar_root)
    full.setup()
    before = split_ids(full)
    # ids that would have gone to train, to val and to test, plus one that matches nothing
    listed = before["train"][:3] + before["val"][:2] + before["test"][:2]
    path = tmp_path / "ex.txt"
    path.write_text("# clean split\n" + "\n".join(listed) + "\ntrain/100000\n")

    dm = cifar_dm(cifar_root, exclude_ids=str(path))
    with caplog.at_level(logging.INFO):
        dm.setup()
    after = split_ids(dm)
    every_after = after["train"] + after["val"] + after["test"]
    assert not set(listed) & set(every_after)
    assert len(every_after) == len(set(every_after))  # nobody twice
    assert sorted(every_after) == sorted(set(before["train"] + before["val"] + before["test"]) - set(listed))
    assert "removed 5 of 100 samples from source split 'train'" in caplog.text
    assert "removed 2 of 40 samples from source split 'test'" in caplog.text
    assert "1 of 8 ids match no sample" in caplog.text and "train/100000" in caplog.text
    # val is still carved from what is left of the pool, stratified: 2 per class of 10 classes
    assert len(after["val"]) == 20 and len(after["train"]) == 100 - 5 - 20


def test_cifar_long_tailed_training_split_never_gets_a_listed_id(cifar_root: Path, tmp_path: Path) -> None:
    path = tmp_path / "ex.txt"
    listed = [f"train/{n}" for n in range(0, 100, 3)]
    path.write_text("\n".join(listed) + "\n")
    dm = cifar_dm(cifar_root, exclude_ids=str(path), imbalance_factor=2)
    dm.setup()
    ids = split_ids(dm)
    assert not set(listed) & set(ids["train"] + ids["val"])
    assert len(ids["train"]) < 100 - len(listed) - len(ids["val"])  # the long-tail cut happened too


def image_tree(tmp_path: Path) -> Path:
    samples = generated_samples(tmp_path / "gen", num_classes=3, per_class=4, size=(40, 48))
    root = tmp_path / "tree"
    build_train(root, samples)
    build_val(root, samples, "folders")
    return root


def test_class_folders_with_holdout_and_val_folder(tmp_path: Path) -> None:
    root = image_tree(tmp_path)
    train_files = sorted(p.relative_to(root).as_posix() for p in (root / "train").rglob("*.JPEG"))
    val_files = sorted(p.relative_to(root).as_posix() for p in (root / "val").rglob("*.JPEG"))
    listed = train_files[::3] + val_files[:2]
    path = tmp_path / "ex.txt"
    path.write_text("\n".join(listed) + "\n")

    def dm(**kwargs) -> ClassFolderDataModule:
        module = ClassFolderDataModule(
            str(root),
            val_split="holdout",
            test_split="val",
            val_fraction=0.25,
            batch_size=2,
            num_workers=0,
            progress=False,
            **kwargs,
        )
        module.setup()
        return module

    assert (
        sorted(dm().splits.train.ids.tolist() + dm().splits.val.ids.tolist()) == train_files
    )  # ids = paths under data_dir
    ids = split_ids(dm(exclude_ids=str(path)))
    assert sorted(ids["train"] + ids["val"]) == sorted(set(train_files) - set(listed))
    assert sorted(ids["test"]) == sorted(set(val_files) - set(listed))


def test_imagenet_flat_val_ids_are_paths_under_data_dir(tmp_path: Path) -> None:
    samples = generated_samples(tmp_path / "gen", num_classes=3, per_class=2, size=(40, 48))
    root = tmp_path / "imagenet"
    build_train(root, samples)
    truth = build_val(root, samples, "kaggle")
    listed = ["val/" + sorted(truth)[0], "train/" + samples[0][0] + f"/{samples[0][0]}_1.JPEG"]
    path = tmp_path / "ex.txt"
    path.write_text("\n".join(listed) + "\n")
    dm = ImageNetDataModule(
        str(root), val_split="val", test_split="val", batch_size=2, num_workers=0, progress=False, exclude_ids=str(path)
    )
    dm.setup()
    ids = split_ids(dm)
    assert sorted(ids["val"]) == sorted(f"val/{name}" for name in truth if f"val/{name}" not in listed)
    assert listed[1] not in ids["train"] and len(ids["train"]) == len(samples) - 1


# ---- what a real run's loaders hand each rank ------------------------------------------------


def recorded(out_dir: Path, stage: str) -> dict[int, list[str]]:
    by_rank = {}
    for path in sorted(out_dir.glob(f"{stage}_rank*.json")):
        record = json.loads(path.read_text())
        # the batches that arrived are the samples the ids name (same labels, same order)
        assert record["batch_labels"] == record["id_labels"], path
        by_rank[int(path.stem.rsplit("rank", 1)[1])] = record["ids"]
    return by_rank


# ~20-35 s each on the loaded 2-core machine: the DDP case (the hard one) runs by default
@pytest.mark.parametrize("trainer", [pytest.param("cpu", marks=pytest.mark.slow), "ddp_sim"])
def test_train_py_never_loads_an_excluded_id(cifar_root: Path, tmp_path: Path, trainer: str) -> None:
    full = cifar_dm(cifar_root)
    full.setup()
    before = split_ids(full)
    listed = before["train"][::7] + before["val"][:3] + before["test"][1::5]
    path = tmp_path / "ex.txt"
    path.write_text("\n".join(listed) + "\n")
    out = tmp_path / "ids"
    run_script(
        "train.py",
        f"trainer={trainer}",
        "trainer.max_epochs=1",
        "logger=none",
        f"dataset.data_dir={cifar_root}",
        "dataset.val_fraction=0.2",
        f"dataset.exclude_ids={path}",
        f"hydra.run.dir={tmp_path / 'run'}",
        "+callbacks.id_recorder._target_=tests.helpers.id_recorder.IdRecorder",
        f"+callbacks.id_recorder.out_dir={out}",
        *TINY_MODEL,
        "dataset.batch_size=16",
        timeout=420,
    )
    world = 2 if trainer == "ddp_sim" else 1
    kept = {name: set(before[name]) - set(listed) for name in before}
    seen = {}
    for stage in ("train", "val", "test"):
        by_rank = recorded(out, stage)
        assert sorted(by_rank) == list(range(world)), stage
        every = [i for ids in by_rank.values() for i in ids]
        assert not set(listed) & set(every), stage
        seen[stage] = set(every)
        if stage != "train":  # evaluation: every sample once across the ranks (unpadded)
            assert len(every) == len(set(every)), stage
    # the listed ids were removed before the hold-out: the three splits together are all the others
    assert seen["train"] | seen["val"] == kept["train"] | kept["val"]
    assert seen["test"] == kept["test"]
    assert not seen["train"] & seen["val"]
