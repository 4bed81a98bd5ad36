"""The audit's two ways to out-of-sample probabilities on the same flipped labels (issue 19 s.4):
``audit.label_errors.method=features`` on a backbone pretrained on OTHER classes vs ``cross_fit``.

On the real CIFAR-10 subset: a ResNet-9 is trained on five classes (airplane, automobile, bird, cat,
deer) and exported as a weight file; on the other five (dog, frog, horse, ship, truck) 5% of the
training labels are flipped (seed 0) and the audit runs once per method (``experiment=cifar10_cpu``,
the defaults: 3 folds, 12 epochs per fold for cross_fit). Prints precision, recall and wall time side
by side; the last line is ``features_vs_cross_fit_time=<ratio>`` (features' wall time / cross_fit's).

    PYTHONPATH=<checkout>/.. nice python bench/audit_methods.py [--pretrain-epochs 8] [--out /tmp/audit_methods]
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.helpers: the CIFAR writer in the official byte format

SOURCE_CLASSES, TARGET_CLASSES = [0, 1, 2, 3, 4], [5, 6, 7, 8, 9]


def write_tree(subset: Path, out: Path, classes: list[int], flip: float = 0.0, seed: int = 0) -> list[str]:
    """A CIFAR tree of ``classes`` only (relabelled 0..4); ``flip`` of its training labels changed at random."""
    from litvision.datamodules.readers.cifar_pickle import (
        CIFAR10_DIRNAME,
        META_FILE,
        TEST_FILES,
        TRAIN_FILES,
        load_class_names,
        load_split,
    )
    from tests.helpers.fake_cifar import write_batch, write_meta

    names = load_class_names(subset / CIFAR10_DIRNAME)
    target = out / CIFAR10_DIRNAME
    target.mkdir(parents=True, exist_ok=True)
    flipped: list[str] = []
    for train in (True, False):
        images, labels = load_split(subset / CIFAR10_DIRNAME, train=train)
        keep = np.isin(labels, classes)
        images, labels = images[keep], np.searchsorted(classes, labels[keep])
        if train and flip:
            rng = np.random.default_rng(seed)
            chosen = np.sort(rng.choice(len(labels), int(round(flip * len(labels))), replace=False))
            labels = labels.copy()
            labels[chosen] = (labels[chosen] + rng.integers(1, len(classes), len(chosen))) % len(classes)
            flipped = [f"train/{i}" for i in chosen]
        files = TRAIN_FILES if train else TEST_FILES
        for name, part in zip(files, np.array_split(np.arange(len(labels)), len(files)), strict=True):
            write_batch(target / name, images[part], labels[part])
    write_meta(target / META_FILE, [names[c] for c in classes])
    return flipped


def compose(config: str, out: Path, overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return hydra_compose(
            config, overrides=[f"paths.root_dir={out}", f"paths.output_dir={out}", "logger=none", *overrides]
        )


def pretrain(data: Path, out: Path, epochs: int) -> tuple[Path, float, float]:
    """(weight file, seconds, test top-1) of a ResNet-9 trained on the source classes."""
    from litvision.lightning_modules.weights.export import export_backbone
    from litvision.tasks.train import train

    cfg = compose(
        "train",
        out,
        ["experiment=cifar10_cpu", f"dataset.data_dir={data}", f"trainer.max_epochs={epochs}", "dataset.num_workers=0"],
    )
    start = time.perf_counter()
    metrics = train(cfg)
    seconds = time.perf_counter() - start
    best = sorted((out / "checkpoints").glob("best_*.ckpt"))[-1]
    return (
        export_backbone(best, out / "source_resnet9.safetensors"),
        seconds,
        float(metrics.get("test/acc_top1", np.nan)),
    )


def run_audit(data: Path, out: Path, overrides: list[str], flipped: set[str]) -> dict[str, float]:
    from litvision.tasks.audit import audit

    cfg = compose(
        "audit",
        out,
        [
            "experiment=cifar10_cpu",
            f"dataset.data_dir={data}",
            "audit.sections=[label_errors]",
            "dataset.num_workers=0",
            *overrides,
        ],
    )
    start = time.perf_counter()
    summary = audit(cfg)
    seconds = time.perf_counter() - start
    with open(out / "audit" / "label_issues.csv", newline="") as f:
        issues = [row["id"] for row in csv.DictReader(f)]
    hits = sum(sample_id in flipped for sample_id in issues)
    stored = np.load(out / "audit" / "out_of_sample.npz")
    given = stored["probabilities"][np.arange(len(stored["ids"])), stored["labels"]]
    ranking = stored["ids"][np.argsort(given, kind="stable")][: len(flipped)]
    at_k = sum(str(sample_id) in flipped for sample_id in ranking) / len(flipped)
    return {
        "seconds": seconds,
        "suspects": len(issues),
        "precision": hits / max(1, len(issues)),
        "recall": hits / len(flipped),
        "precision_at_flips": at_k,
        "accuracy": float(summary["label_errors/out_of_sample_accuracy"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subset", type=Path, default=ROOT.parent / "shared" / "data" / "cifar10-subset")
    parser.add_argument("--out", type=Path, default=Path("/tmp/litvision_audit_methods"))
    parser.add_argument("--pretrain-epochs", type=int, default=8)
    parser.add_argument("--flip", type=float, default=0.05)
    args = parser.parse_args()

    import logging

    from litvision.launch.resolvers import register_resolvers

    register_resolvers()
    logging.getLogger("lightning").setLevel(logging.WARNING)
    out = args.out
    write_tree(args.subset, out / "source_data", SOURCE_CLASSES)
    flipped = set(write_tree(args.subset, out / "target_data", TARGET_CLASSES, flip=args.flip, seed=0))
    weights, pretrain_seconds, source_acc = pretrain(out / "source_data", out / "pretrain", args.pretrain_epochs)
    print(f"pretrained on 5 source classes: {pretrain_seconds:.0f} s, test top-1 {source_acc:.3f} -> {weights}")

    target = out / "target_data"
    results = {
        "features": run_audit(
            target,
            out / "features",
            [f"model.backbone.weights={weights}", "audit.label_errors.method=features"],
            flipped,
        ),
        "cross_fit": run_audit(target, out / "cross_fit", [], flipped),
    }
    print(f"\n{len(flipped)} flipped labels ({args.flip:.0%} of the 5 target classes' training images, seed 0)")
    print("| method | wall s | out-of-sample top-1 | suspects | precision | recall | precision at k=flips |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        print(
            f"| {name} | {r['seconds']:.1f} | {r['accuracy']:.3f} | {r['suspects']} | {r['precision']:.3f} "
            f"| {r['recall']:.3f} | {r['precision_at_flips']:.3f} |"
        )
    print(f"(pretraining the backbone, once, not counted above: {pretrain_seconds:.0f} s)")
    print(f"features_vs_cross_fit_time={results['features']['seconds'] / results['cross_fit']['seconds']:.4f}")


if __name__ == "__main__":
    main()
