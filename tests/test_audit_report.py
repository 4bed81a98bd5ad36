"""``python audit.py`` end to end: every section, report.md with its figures, the CSVs, W&B offline,
and the clean-split file accepted by the DataModules."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np

from litvision.datamodules.cifar10 import CIFAR10DataModule
from litvision.datamodules.readers.cifar_pickle import CIFAR10_DIRNAME, load_split
from litvision.datamodules.sampling.exclusions import read_exclusion_file
from tests.helpers.audit_planting import altered, copy_tree
from tests.helpers.fake_cifar import write_fake_cifar
from tests.helpers.run_helpers import TINY_MODEL, run_script
from tests.helpers.wandb_offline import records


def test_all_sections_report_csvs_wandb_and_exclusions(tmp_path: Path) -> None:
    source = write_fake_cifar(tmp_path / "src", n_train_per_class=20, n_test_per_class=7, seed=0).parent
    train_images, train_labels = load_split(source / CIFAR10_DIRNAME, train=True)
    rng = np.random.default_rng(0)
    train_images[11] = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    train_images[12] = altered(train_images[11], "exact", 0)  # an exact copy inside the training batches
    test_images, _ = load_split(source / CIFAR10_DIRNAME, train=False)
    train_images[20] = test_images[3]  # a test image leaked into the training batches
    root = tmp_path / "data"
    copy_tree(source, root, train_images, train_labels)

    run_dir = tmp_path / "run"
    run_script(
        "audit.py",
        f"dataset.data_dir={root}",
        *TINY_MODEL,
        "audit.label_errors.folds=2",
        "audit.label_errors.epochs=1",
        "audit.write_exclusions=true",
        f"hydra.run.dir={run_dir}",
        timeout=900,
    )
    out = run_dir / "audit"

    report = (out / "report.md").read_text()
    for title in ("Class balance", "Image health", "Duplicates and leakage", "Suspected label errors", "Clean split"):
        assert f"## {title}" in report
    figures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)
    assert {"balance.png", "duplicates.png", "label_issues.png"} <= set(figures)
    assert all((out / name).stat().st_size > 1000 for name in figures)

    with open(out / "duplicates.csv", newline="") as f:
        assert {(r["a"], r["b"], r["kind"]) for r in csv.DictReader(f)} == {
            ("train/11", "train/12", "exact"),
            ("train/20", "test/3", "exact"),
        }
    with open(out / "label_issues.csv", newline="") as f:
        issues = list(csv.DictReader(f))
    assert issues and list(issues[0]) == ["id", "given_label", "suggested_label", "quality"]
    qualities = [float(r["quality"]) for r in issues]
    assert qualities == sorted(qualities)  # best suspects first
    summary = json.loads((out / "summary.json").read_text())
    assert summary["duplicates/exact_within_split"] == 1 and summary["label_errors/num_issues"] == len(issues)

    # the clean split: the test copy, the later training copy and the suspects, in the format
    # dataset.exclude_ids reads
    excluded = read_exclusion_file(out / "exclude_ids.txt")
    assert set(excluded) == {"test/3", "train/12"} | {r["id"] for r in issues}
    dm = CIFAR10DataModule(data_dir=str(root), download=False, num_workers=0, exclude_ids=str(out / "exclude_ids.txt"))
    dm.setup("fit")
    kept = {i for split in ("train", "val", "test") for i in getattr(dm.splits, split).ids}
    assert kept == ({f"train/{i}" for i in range(200)} | {f"test/{i}" for i in range(70)}) - set(excluded)

    # W&B offline: tables, their thumbnails as image lists, the figures, the summary numbers, the report file
    (wandb_run,) = (run_dir / "wandb").glob("offline-run-*")
    media = wandb_run / "files" / "media"
    tables = {p.name.split("_table")[0].rsplit("_", 2)[0] for p in (media / "table" / "audit").glob("*.table.json")}
    # (a table with images is kept offline only outside the run dir, wandb#4611: its rows and images are also logged apart)
    assert {"balance_summary", "balance_counts", "duplicates_rows", "label_issues_rows"} <= tables
    images = {p.name.rsplit("_", 2)[0] for p in (media / "images" / "audit").glob("*.png")}
    assert {"balance", "duplicates", "label_issues", "duplicates_images", "label_issues_images"} <= images
    assert (wandb_run / "files" / "audit" / "report.md").is_file()
    logged, summary_keys = set(), set()
    for record in records(next(wandb_run.glob("*.wandb"))):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            logged |= {item.key or item.nested_key[0] for item in record.history.item}
        elif kind == "summary":
            summary_keys |= {item.key or item.nested_key[0] for item in record.summary.update}
    assert {"audit/label_issues", "audit/duplicates", "audit/balance"} <= logged
    assert "label_errors/num_issues" in summary_keys and "duplicates/exact_within_split" in summary_keys
