"""End to end on a class-folder tree with the names people really have (tests/helpers/weird_names.py):
``train.py logger=csv``, ``predict.py`` and ``audit.py`` write every file, and the ids they write read
back to the same files, through ``dataset.exclude_ids`` too.

On the old code each of these runs died with ``UnicodeEncodeError ... surrogates not allowed`` (the
CSV logger's metric names, predictions.csv, the audit's CSVs) and wrote nothing.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

from litvision.data_audit.clean_split import write_exclusions
from litvision.datamodules.class_folder import ClassFolderDataModule
from litvision.datamodules.sampling.exclusions import read_exclusion_file
from litvision.utils.names import escape_name, name_bytes, read_csv_cell, unescape_name
from tests.helpers.run_helpers import TINY_MODEL, run_script
from tests.helpers.weird_names import CLASSES, broken_id, build_weird_tree, copied_val_ids, file_ids

DATA = [
    "dataset=class_folder",
    "augmentation=cifar_standard",
    "dataset.progress=false",
    *TINY_MODEL,
    "dataset.batch_size=16",
]
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
CLASS_NAMES = {os.fsdecode(c) for c in CLASSES}


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_weird_tree(tmp_path_factory.mktemp("weird") / "tree")


@pytest.fixture(scope="module")
def trained(tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("weird_train")
    run_script(
        "train.py", f"dataset.data_dir={tree}", *DATA, "logger=csv", "trainer.max_epochs=1", f"hydra.run.dir={run_dir}"
    )
    return run_dir


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:  # strict UTF-8: nothing undecodable was written
        return list(csv.DictReader(handle))


def assert_no_formula_cells(path: Path) -> None:
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.reader(handle):
            for cell in row:
                assert not cell.startswith(FORMULA_START) or float(cell) is not None, (path.name, cell)


def is_file(root: Path, written_id: str) -> bool:
    return os.path.isfile(os.path.join(os.fsencode(root), name_bytes(written_id)))


def test_train_with_the_csv_logger_writes_metric_names_with_every_class(trained: Path) -> None:
    with open(next((trained / "csv").rglob("metrics.csv")), newline="", encoding="utf-8") as handle:
        header = next(csv.reader(handle))
    for name in CLASS_NAMES:
        assert f"val/recall/{escape_name(name)}" in header
    assert "val/recall/caf\\xe9" in header and "val/recall/tab\\x09here" in header
    metrics = json.loads((trained / "metrics.json").read_text(encoding="utf-8"))
    assert {unescape_name(k.split("/", 2)[2]) for k in metrics if k.startswith("test/recall/")} == CLASS_NAMES
    log = (trained / "train.log").read_text(encoding="utf-8")
    assert "broken\\xfe.png" in log  # the skipped file's log line was written, its byte escaped


def test_predict_writes_ids_that_read_back_to_the_files(trained: Path, tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "predict"
    checkpoint = next((trained / "checkpoints").glob("best*.ckpt"))
    run_script(
        "predict.py", f"ckpt_path={checkpoint}", f"dataset.data_dir={tree}", *DATA, "split=test", f"hydra.run.dir={out}"
    )
    rows = read_rows(out / "predictions.csv")
    ids = [read_csv_cell(row["id"]) for row in rows]
    assert set(ids) == file_ids(b"val") - {broken_id(b"val")}
    assert all(is_file(tree, escape_name(i)) for i in ids)
    for sample_id, row in zip(ids, rows, strict=True):
        assert read_csv_cell(row["label"]) == sample_id.split("/")[1]  # the class folder of the file
        assert {unescape_name(n) for n in read_csv_cell_keep_escapes(row["top5"]).split("|")} == CLASS_NAMES
    assert "'=SUM(1+1)" in {row["label"] for row in rows}  # the formula guard, read back without it
    assert_no_formula_cells(out / "predictions.csv")
    summary = json.loads((out / "predictions.json").read_text(encoding="utf-8"))
    assert summary["missing_ids"] == [escape_name(broken_id(b"val"))]
    assert {unescape_name(c) for c in summary["classes"]} == CLASS_NAMES

    # ids taken from predictions.csv select the same files through dataset.exclude_ids
    picked = [i for i in ids if i.split("/")[1] in ("tab\there", "caf\udce9")]
    exclusions = write_exclusions(tmp_path / "from_predictions.txt", [("from predictions.csv", picked)])
    dm = ClassFolderDataModule(
        str(tree),
        val_split="val",
        test_split="val",
        batch_size=4,
        num_workers=0,
        progress=False,
        exclude_ids=str(exclusions),
    )
    dm.setup("fit")
    assert set(dm.splits.val.ids.tolist()) == file_ids(b"val") - set(picked)


def read_csv_cell_keep_escapes(cell: str) -> str:
    """A top-k cell: drop the formula guard only; the names are split on '|' before unescaping."""
    return cell.removeprefix("'")


@pytest.fixture(scope="module")
def audited(tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("weird_audit")
    run_script(
        "audit.py",
        f"dataset.data_dir={tree}",
        *DATA,
        "logger=none",
        "audit.num_workers=0",
        "audit.sections=[balance,health,duplicates]",
        "audit.write_exclusions=true",
        "audit.duplicates.index=flat",
        f"hydra.run.dir={run_dir}",
    )
    return run_dir / "audit"


def test_audit_writes_every_file_with_ids_that_read_back(audited: Path, tree: Path) -> None:
    for name in ("balance.csv", "health.csv", "duplicates.csv", "duplicates_our_splits.csv"):
        assert_no_formula_cells(audited / name)
    assert {read_csv_cell(row["class"]) for row in read_rows(audited / "balance.csv")} == CLASS_NAMES
    unreadable = {read_csv_cell(row["id"]) for row in read_rows(audited / "health.csv") if row["issue"] == "unreadable"}
    assert unreadable == {broken_id(b"train"), broken_id(b"val")}
    pairs = read_rows(audited / "duplicates.csv")
    assert {read_csv_cell(row["b"]) for row in pairs} == copied_val_ids()
    assert all(is_file(tree, escape_name(read_csv_cell(row[k]))) for row in pairs for k in ("a", "b"))
    assert set(read_exclusion_file(audited / "exclude_ids.txt")) == copied_val_ids()
    report = (audited / "report.md").read_text(encoding="utf-8")
    assert "broken\\xfe.png" in report
    json.loads((audited / "summary.json").read_text(encoding="utf-8"))


def test_train_reads_the_audits_exclusions_back_to_the_same_files(audited: Path, tree: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "clean"
    run_script(
        "train.py",
        f"dataset.data_dir={tree}",
        *DATA,
        "logger=csv",
        "trainer.max_epochs=1",
        "test=false",
        f"dataset.exclude_ids={audited / 'exclude_ids.txt'}",
        "+callbacks.id_recorder._target_=tests.helpers.id_recorder.IdRecorder",
        f"+callbacks.id_recorder.out_dir={run_dir}/ids",
        f"hydra.run.dir={run_dir}",
    )
    val = json.loads((run_dir / "ids" / "val_rank0.json").read_text())["ids"]
    train = json.loads((run_dir / "ids" / "train_rank0.json").read_text())["ids"]
    assert set(val) == file_ids(b"val") - copied_val_ids()
    assert set(train) == file_ids(b"train")


@pytest.mark.slow
def test_wandb_tables_and_keys_of_train_and_audit_hold_the_escaped_names(tree: Path, tmp_path: Path) -> None:
    train_dir = tmp_path / "train"
    run_script(
        "train.py",
        f"dataset.data_dir={tree}",
        *DATA,
        "logger=wandb",
        "trainer.max_epochs=1",
        f"hydra.run.dir={train_dir}",
    )
    per_class = [
        json.loads(p.read_text(encoding="utf-8"))
        for p in train_dir.glob("wandb/offline-run-*/files/media/table/test/per_class_*.table.json")
    ]
    assert per_class and {unescape_name(row[0]) for row in per_class[0]["data"]} == CLASS_NAMES
    history = next(train_dir.glob("wandb/offline-run-*/*.wandb")).read_bytes()
    assert b"test/recall/caf\\xe9" in history  # the metric key, escaped

    audit_dir = tmp_path / "audit"
    run_script(
        "audit.py",
        f"dataset.data_dir={tree}",
        *DATA,
        "logger=wandb",
        "audit.num_workers=0",
        "audit.sections=[balance,health,duplicates]",
        "audit.duplicates.index=flat",
        f"hydra.run.dir={audit_dir}",
    )
    rows = [
        json.loads(p.read_text(encoding="utf-8"))
        for p in audit_dir.glob("wandb/offline-run-*/files/media/table/audit/duplicates_rows_*.table.json")
    ]
    assert rows and {unescape_name(row[1]) for row in rows[0]["data"]} == copied_val_ids()


def test_a_shard_set_keeps_the_class_names_and_lists_bad_files_escaped(tree: Path, tmp_path: Path) -> None:
    pytest.importorskip("webdataset")
    from litvision.datamodules.shard_datamodule import ShardDataModule
    from litvision.datamodules.shards.prepare import prepare

    out = tmp_path / "shards"
    files = ClassFolderDataModule(str(tree), val_split="val", test_split="val", num_workers=0, progress=False)
    prepare(files, out, samples_per_shard=50, workers=1)
    text = (out / "manifest.json").read_text(encoding="utf-8")
    assert "\\udc" not in text  # no lone surrogates, which strict JSON parsers refuse
    manifest = json.loads(text)
    assert {unescape_name(c) for c in manifest["classes"]} == CLASS_NAMES
    bad = {unescape_name(b["id"]) for info in manifest["splits"].values() for b in info["bad_files"]}
    assert bad == {broken_id(b"train"), broken_id(b"val")}
    assert ShardDataModule(str(out), num_workers=0).class_names == files.class_names
