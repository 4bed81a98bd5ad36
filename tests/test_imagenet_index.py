"""ImageNet file indices: val layouts, labels, class names, and the index cache."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from litvision.datamodules.imagenet import ImageNetDataModule
from litvision.datamodules.readers.imagenet_index import read_devkit
from tests.helpers.imagenet_trees import age_tree, build_train, build_val, generated_samples, real_samples, write_devkit

LAYOUTS = ("folders", "kaggle", "devkit")


def datamodule(root, **kwargs) -> ImageNetDataModule:
    kwargs.setdefault("val_split", "val")
    kwargs.setdefault("test_split", "val")
    return ImageNetDataModule(str(root), batch_size=4, num_workers=0, progress=False, **kwargs)


def val_labels(dm: ImageNetDataModule) -> dict[str, int]:
    """Val file name -> class index, whatever the layout's folder structure."""
    index = dm.index("val")
    return {os.path.basename(p): int(label) for p, label in zip(index.names(), index.labels, strict=True)}


def build_all_layouts(tmp_path, samples):
    roots = {}
    for layout in LAYOUTS:
        root = tmp_path / layout
        build_train(root, samples)
        truth = build_val(root, samples, layout)
        roots[layout] = root
    return roots, truth


def generated_tree(tmp_path, num_classes: int, val_layout: str):
    """A train tree of generated JPEGs plus their val copy in ``val_layout``."""
    samples = generated_samples(tmp_path / "gen", num_classes=num_classes)
    root = tmp_path / "tree"
    build_train(root, samples)
    build_val(root, samples, val_layout)
    return root, samples


@pytest.mark.parametrize("source", ["real", "generated"])
def test_val_layouts_give_identical_labels(tmp_path, source):
    samples = real_samples() if source == "real" else generated_samples(tmp_path / "gen", num_classes=7, per_class=2)
    roots, truth = build_all_layouts(tmp_path, samples)
    wnids = sorted({w for w, _ in samples})
    expected = {name: wnids.index(wnid) for name, wnid in truth.items()}  # standard index: sorted wnids
    for layout, root in roots.items():
        dm = datamodule(root)
        assert dm.index("train").classes == wnids
        assert val_labels(dm) == expected, layout
        # train labels follow the class folders
        train = dm.index("train")
        assert all(wnids[label] == path.split("/")[0] for path, label in zip(train.names(), train.labels, strict=True))


def test_devkit_id_order_is_mapped_through_the_wnid(tmp_path):
    root, samples = generated_tree(tmp_path, 5, "devkit")
    stems, names = read_devkit(root / "ILSVRC2012_devkit_t12")
    gt = (root / "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt").read_text().split()
    # IDs differ from sorted-wnid positions + 1, yet the labels come out as the sorted-wnid index
    wnids = sorted(w for w, _ in samples)
    assert any(int(i) != wnids.index(stems[f"ILSVRC2012_val_{k + 1:08d}"]) + 1 for k, i in enumerate(gt))
    assert len(names) == 5  # inner WordNet nodes (num_children > 0) are not classes


def test_class_names_are_readable_and_reach_the_metric_keys(tmp_path):
    samples = real_samples()
    root = tmp_path / "tree"
    build_train(root, samples)
    build_val(root, samples, "folders")
    dm = datamodule(root)
    names = dm.class_names
    assert len(names) == 1000 and names[:3] == ["tench", "goldfish", "great_white_shark"]
    # names match the sample files <wnid>_<name>.JPEG, in sorted-wnid order
    assert names == [p.name.split("_", 1)[1].rsplit(".", 1)[0] for _, p in samples]
    from litvision.lightning_modules.metrics.collections import unique_metric_names

    keys = unique_metric_names(names)
    assert len(set(keys)) == 1000 and "crane_134" in keys  # two different 'crane' classes


def test_unknown_generated_wnids_fall_back_to_devkit_names(tmp_path):
    root, samples = generated_tree(tmp_path, 3, "devkit")
    assert datamodule(root).class_names == [f"name of n9{c:07d}" for c in range(3)]


def test_val_image_without_label_is_an_error(tmp_path):
    root, samples = generated_tree(tmp_path, 3, "kaggle")
    (root / "val" / "ILSVRC2012_val_00000099.JPEG").write_bytes(b"")
    with pytest.raises(ValueError, match="no label"):
        datamodule(root).index("val")


def test_missing_val_labels_explain_the_layouts(tmp_path):
    samples = generated_samples(tmp_path / "gen", num_classes=2)
    root = tmp_path / "tree"
    build_train(root, samples)
    (root / "val").mkdir()
    with pytest.raises(FileNotFoundError, match="LOC_val_solution.csv"):
        datamodule(root).index("val")


def test_val_class_folder_not_in_train_is_an_error(tmp_path):
    root, samples = generated_tree(tmp_path, 3, "folders")
    (root / "val" / "n99999999").mkdir()
    with pytest.raises(ValueError, match="n99999999"):
        datamodule(root).index("val")


def forbid_directory_walks(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"directory listed on a cached start: {args}")

    for name in ("scandir", "walk", "listdir"):
        monkeypatch.setattr(os, name, refuse)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_index_cache_is_used_on_second_start_and_rebuilt_when_a_file_is_added(
    tmp_path, monkeypatch, layout, user_cache
):
    samples = generated_samples(tmp_path / "gen", num_classes=4, per_class=2)
    root = tmp_path / "tree"
    build_train(root, samples)
    build_val(root, samples, layout)
    age_tree(root)

    first = datamodule(root)
    first.prepare_data()
    first.setup("fit")
    assert len(list(user_cache.glob("index-*.npz"))) == 2  # train + val, in the user cache

    with monkeypatch.context() as patch:
        forbid_directory_walks(patch)
        second = datamodule(root)
        second.prepare_data()
        second.setup("fit")
    for split in ("train", "val"):
        assert second.index(split).names() == first.index(split).names()
        assert np.array_equal(second.index(split).labels, first.index(split).labels)
    assert second.class_names == first.class_names

    # add a training image: its class folder's mtime changes, the next start re-indexes
    wnid, src = samples[0]
    (root / "train" / wnid / "added.JPEG").write_bytes(src.read_bytes())
    third = datamodule(root)
    names = third.index("train").names()
    assert f"{wnid}/added.JPEG" in names and len(names) == len(samples) + 1


def test_index_cache_location_can_be_chosen(tmp_path, user_cache):
    root, samples = generated_tree(tmp_path, 2, "folders")
    age_tree(root)
    cache = tmp_path / "cache"
    datamodule(root, index_cache_dir=str(cache)).prepare_data()
    assert len(list(cache.glob("index-*.npz"))) == 2 and not (root / ".litvision_index").exists()
    assert not user_cache.exists()


def test_the_index_cache_stays_out_of_the_data_folder_unless_asked(tmp_path, user_cache):
    """A user's photo folder is theirs: by default the index goes to the user cache, and
    ``dataset.index_cache_dir=${dataset.data_dir}/.litvision_index`` puts it beside the data."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    root, samples = generated_tree(tmp_path, 2, "folders")
    age_tree(root)
    before = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    datamodule(root).prepare_data()
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*")) == before  # nothing written into the tree
    assert len(list(user_cache.glob("index-*.npz"))) == 2

    conf = Path(__file__).resolve().parents[1] / "conf"
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                "dataset=class_folder",
                f"dataset.data_dir={root}",
                "dataset.progress=false",
                "dataset.index_cache_dir=${dataset.data_dir}/.litvision_index",
            ],
        )
    instantiate(cfg.dataset).prepare_data()
    assert len(list((root / ".litvision_index").glob("index-*.npz"))) == 2


def test_holdout_split_is_stratified_and_removed_from_training(tmp_path):
    samples = generated_samples(tmp_path / "gen", num_classes=4, per_class=10)
    root = tmp_path / "tree"
    build_train(root, samples)
    build_val(root, samples[:4], "folders")
    dm = datamodule(root, val_split="holdout", test_split="val", val_fraction=0.2)
    dm.setup("fit")
    assert len(dm.splits.val) == 8 and len(dm.splits.train) == 32 and len(dm.splits.test) == 4
    assert np.bincount(dm.splits.val.targets).tolist() == [2, 2, 2, 2]
    train_files = {dm.splits.train.path(i) for i in range(len(dm.splits.train))}
    assert not train_files & {dm.splits.val.path(i) for i in range(len(dm.splits.val))}


def test_split_choice_is_validated(tmp_path):
    with pytest.raises(ValueError, match="not public"):
        ImageNetDataModule(str(tmp_path), val_split="val", test_split="test")
    with pytest.raises(ValueError, match="val_split"):
        ImageNetDataModule(str(tmp_path), val_split="train", test_split="val")


def test_devkit_writer_makes_a_non_sorted_id_order(tmp_path):
    wnids = [f"n0000000{k}" for k in range(6)]
    ids = write_devkit(tmp_path / "devkit", wnids, np.random.default_rng(0))
    assert [ids[w] for w in sorted(wnids)] != list(range(1, 7))


def test_kaggle_download_layout_with_nested_image_folders(tmp_path):
    """Kaggle's archive: ROOT/ILSVRC/Data/CLS-LOC/{train,val} with ROOT/LOC_val_solution.csv."""
    samples = generated_samples(tmp_path / "gen", num_classes=4)
    root = tmp_path / "kaggle"
    nested = root / "ILSVRC" / "Data" / "CLS-LOC"
    build_train(nested, samples)
    truth = build_val(nested, samples, "kaggle")
    (nested / "LOC_val_solution.csv").rename(root / "LOC_val_solution.csv")
    dm = datamodule(root)
    wnids = sorted(w for w, _ in samples)
    assert val_labels(dm) == {name: wnids.index(w) for name, w in truth.items()}


# ---- the index cache never serves stale labels, and survives a broken cache file ----------------


def aged(path, seconds: float = 3600) -> None:
    """Date ``path`` back, as a file nobody is writing right now."""
    import time

    when = time.time() - seconds
    os.utime(path, (when, when))


def kaggle_csv(path, truth: dict[str, str]) -> None:
    rows = [f"{os.path.splitext(name)[0]},{wnid} 1 2 3 4" for name, wnid in truth.items()]
    path.write_text("ImageId,PredictionString\n" + "\n".join(rows) + "\n")


def shifted(truth: dict[str, str]) -> dict[str, str]:
    """Every val image relabelled as the next class (same wnid lengths: same file size)."""
    wnids = sorted(set(truth.values()))
    return {name: wnids[(wnids.index(w) + 1) % len(wnids)] for name, w in truth.items()}


def expected_labels(truth: dict[str, str]) -> dict[str, int]:
    wnids = sorted(set(truth.values()))
    return {name: wnids.index(w) for name, w in truth.items()}


def small_tree(tmp_path, val_layout: str):
    """A 4-class train tree with a val split labelled by ``val_layout``: (root, val truth)."""
    samples = generated_samples(tmp_path / "gen", num_classes=4, per_class=2)
    root = tmp_path / "tree"
    build_train(root, samples)
    return root, build_val(root, samples, val_layout)


def test_another_kaggle_csv_serves_its_own_labels_not_the_cached_ones(tmp_path, user_cache):
    root, truth = small_tree(tmp_path, "kaggle")
    age_tree(root)
    assert val_labels(datamodule(root)) == expected_labels(truth)
    assert len(list(user_cache.glob("index-*.npz"))) == 2  # train + val cached

    other = tmp_path / "other.csv"
    kaggle_csv(other, shifted(truth))
    aged(other)
    assert val_labels(datamodule(root, kaggle_csv=str(other))) == expected_labels(shifted(truth))
    # and back: the first file's labels again (its own cache entry)
    assert val_labels(datamodule(root)) == expected_labels(truth)


def test_a_label_file_replaced_in_place_with_the_same_size_and_time_is_re_read(tmp_path):
    """``cp -p`` of another labelling over the CSV: same path, size and mtime, other content."""
    root, truth = small_tree(tmp_path, "kaggle")
    csv = root / "LOC_val_solution.csv"
    kaggle_csv(csv, truth)
    age_tree(root)
    assert val_labels(datamodule(root)) == expected_labels(truth)
    stat = csv.stat()
    kaggle_csv(csv, shifted(truth))
    os.utime(csv, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert csv.stat().st_size == stat.st_size
    assert val_labels(datamodule(root)) == expected_labels(shifted(truth))


def test_another_devkit_dir_serves_its_own_labels_not_the_cached_ones(tmp_path):
    root, truth = small_tree(tmp_path, "devkit")
    age_tree(root)
    assert val_labels(datamodule(root)) == expected_labels(truth)

    other = tmp_path / "devkit2"
    write_devkit(other, list(shifted(truth).values()), np.random.default_rng(5))
    age_tree(other)
    assert val_labels(datamodule(root, devkit_dir=str(other))) == expected_labels(shifted(truth))


@pytest.mark.parametrize("damage", ["empty", "truncated", "garbage", "not_an_index"])
def test_a_broken_cache_file_is_re_indexed_with_a_warning_naming_it(tmp_path, monkeypatch, caplog, damage, user_cache):
    root, samples = generated_tree(tmp_path, 3, "folders")
    age_tree(root)
    first = datamodule(root)
    first.prepare_data()
    caches = sorted(user_cache.glob("index-*.npz"))
    assert len(caches) == 2
    for cache in caches:
        data = cache.read_bytes()
        cache.write_bytes(
            {
                "empty": b"",
                "truncated": data[: len(data) // 2],
                "garbage": bytes(np.random.default_rng(0).integers(0, 256, 999, dtype=np.uint8)),
                "not_an_index": _npz_bytes(labels=np.zeros(3)),
            }[damage]
        )
    with caplog.at_level("WARNING"):
        second = datamodule(root)
        for split in ("train", "val"):
            assert second.index(split).names() == first.index(split).names()
            assert np.array_equal(second.index(split).labels, first.index(split).labels)
    for cache in caches:
        assert str(cache) in caplog.text
    with monkeypatch.context() as patch:  # the re-built cache was written back, whole
        forbid_directory_walks(patch)
        third = datamodule(root)
        assert third.index("val").names() == first.index("val").names()


def _npz_bytes(**arrays) -> bytes:
    import io

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def test_disagreeing_duplicate_rows_in_the_kaggle_csv_are_refused_with_the_image_id(tmp_path):
    from litvision.utils.errors import DataError

    root, samples = generated_tree(tmp_path, 3, "kaggle")
    csv = root / "LOC_val_solution.csv"
    wnids = sorted(w for w, _ in samples)
    lines = csv.read_text().splitlines()
    image_id, rest = lines[1].split(",", 1)
    other = next(w for w in wnids if w != rest.split()[0])
    csv.write_text("\n".join([*lines, lines[1]]) + "\n")  # an identical duplicate is harmless
    assert len(datamodule(root).index("val")) == 3
    csv.write_text("\n".join([*lines, f"{image_id},{other} 1 2 3 4"]) + "\n")
    with pytest.raises(DataError, match=image_id) as error:
        datamodule(root).index("val")
    assert other in str(error.value) and "dataset.kaggle_csv" in str(error.value)


def test_readable_class_names_load_outside_the_repository(tmp_path):
    """The shipped name table is package data of litvision.datamodules, whatever the cwd."""
    import subprocess
    import sys

    code = "from litvision.datamodules.readers.imagenet_index import shipped_class_names as n; print(n()['n01440764'])"
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "tench"
