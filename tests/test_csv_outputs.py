"""The CSVs litvision writes guard text cells against spreadsheet formulas (OWASP: a leading ``'``) and
keep numbers as they are: ``label_issues.csv``, ``predictions.csv`` (top-k cell included), ``summary.csv``.

On the old code ``=SUM(1+1)`` / ``-2.png`` / ``@x.png`` went into the cells as they are (a spreadsheet runs
them), and an id that is not UTF-8 crashed the writer.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from litvision.callbacks.prediction_writer import PredictionWriter
from litvision.data_audit.label_errors import run_label_errors
from litvision.data_audit.sources import load_audit_data
from litvision.datamodules.class_folder import ClassFolderDataModule
from litvision.launch.sweep_summary import render
from litvision.utils.names import read_csv_cell, unescape_name
from tests.helpers.weird_names import build_weird_tree

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def rows_of(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_label_issues_csv_guards_ids_and_class_names(tmp_path: Path) -> None:
    root = build_weird_tree(tmp_path / "tree")
    data = load_audit_data(
        ClassFolderDataModule(str(root), val_split="val", test_split="val", num_workers=0, progress=False)
    )
    split = data.splits["train"]
    ids, labels = np.asarray(split.ids, dtype=str), np.asarray(split.targets)
    readable = np.array([not i.endswith("broken\udcfe.png") for i in ids])
    ids, labels = ids[readable], labels[readable]
    # confident in the given label, except for the images named like formulas: confident in another class
    suspect = np.array([os.path.basename(i)[0] in "=-@" for i in ids])
    probabilities = np.full((len(ids), len(data.class_names)), 0.02, np.float32)
    probabilities[np.arange(len(ids)), np.where(suspect, (labels + 1) % len(data.class_names), labels)] = 0.94

    _, found = run_label_errors(
        data, ids, labels, probabilities, tmp_path / "out", "test", "self_confidence", int(suspect.sum())
    )
    assert set(found) == set(ids[suspect].tolist())
    rows = rows_of(tmp_path / "out" / "label_issues.csv")
    assert {read_csv_cell(r["id"]) for r in rows} == set(found)
    assert {read_csv_cell(r["given_label"]) for r in rows} <= set(data.class_names)
    assert "'=SUM(1+1)" in {r["given_label"] for r in rows} | {r["suggested_label"] for r in rows}
    for row in rows:
        for column in ("id", "given_label", "suggested_label"):
            assert not row[column].startswith(FORMULA_START)
        float(row["quality"])


def test_predictions_csv_guards_text_keeps_numbers_and_splits_top_k(tmp_path: Path) -> None:
    ids = np.asarray(["=cmd|' /C calc'!A0.png", "-2.png", "ok\udcff.png"], dtype=str)
    classes = ["+plus", "a|b", "@at", "caf\udce9"]
    probs = np.array([[0.7, 0.1, 0.1, 0.1], [0.1, 0.6, 0.2, 0.1], [0.1, 0.2, 0.3, 0.4]], np.float32)
    data = SimpleNamespace(ids=ids, targets=np.array([0, 1, 3]), has_labels=True, description="test")
    PredictionWriter(tmp_path, top_k=3)._write(data, classes, np.arange(3), probs)
    rows = rows_of(tmp_path / "predictions.csv")
    assert [r["id"] for r in rows] == ["'=cmd|' /C calc'!A0.png", "'-2.png", "ok\\xff.png"]
    assert [read_csv_cell(r["id"]) for r in rows] == ids.tolist()
    assert [read_csv_cell(r["pred"]) for r in rows] == ["+plus", "a|b", "caf\udce9"]
    assert rows[0]["top3"] == "'+plus|a\\x7cb|@at"  # guarded; the '|' inside a name escaped
    top = rows[0]["top3"][1:].split("|")
    assert [unescape_name(n) for n in top] == ["+plus", "a|b", "@at"]
    assert [float(r["prob_top1"]) for r in rows] == [0.7, 0.6, 0.4]


def test_sweep_summary_guards_overrides_and_keeps_negative_values() -> None:
    rows = [
        {
            "job_num": 0,
            "status": "COMPLETED",
            "overrides": ["+trainer.limit=2", "seed=-1"],
            "optimized_metric": "val/loss",
            "value": -0.5,
            "metrics": {"val/loss": -0.5},
            "error": "",
            "output_dir": "/runs/0",
        },
        {
            "job_num": 1,
            "status": "COMPLETED",
            "overrides": ["+trainer.limit=3", "seed=1"],
            "optimized_metric": "val/loss",
            "value": 0.25,
            "metrics": {"val/loss": 0.25},
            "error": "",
            "output_dir": "/runs/1",
        },
    ]
    text, _ = render(rows, "minimize")
    table = list(csv.DictReader(text.splitlines()))
    assert table[0]["val/loss"] == "-0.5000" and table[0]["seed"] == "-1"  # numbers stay numbers
    assert table[0]["overrides"] == "'+trainer.limit=2 seed=-1"
