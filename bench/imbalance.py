"""Class-imbalance methods on a real long-tailed CIFAR-10 (CIFAR-10-LT from the shared subset).

Same recipe (``experiment=cifar10_cpu`` with fewer epochs), same split and seeds for every
method; only the sampler or the loss changes. Training split: the real CIFAR-10 subset cut
to the exponential long-tailed profile (IF=10 by default); evaluated on the balanced real
test set (best-by-val checkpoint, val is balanced too). Runs are interleaved seed-major
(seed 0: every method, then seed 1, ...) in ONE process, so machine load drifts hit all
methods alike.

    python bench/imbalance.py [--epochs 8] [--seeds 0 1 2] [--imbalance-factor 10]
                              [--arms ce class_balanced ...] [extra Hydra overrides]
    python bench/imbalance.py --table-only --out DIR   # re-print the table of a finished/killed run

Prints a Markdown table (mean +/- std over seeds): test top-1, balanced accuracy (macro
recall) and the mean recall of the three classes rarest in training. Last line:
``balanced_acc_gain_vs_ce=<best method's mean balanced accuracy - CE's>``.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import lightning as L
import numpy as np
import torch
from hydra.utils import instantiate
from seeded_grid import (
    add_grid_arguments,
    by_arm,
    compose_cfg,
    cpu_model,
    grid_overrides,
    load_range,
    load_results,
    mean_std,
    prepare_out,
    run_grid,
)

from litvision.lightning_modules.metrics.collections import unique_metric_names

# method -> Hydra overrides on top of the common recipe
METHODS: dict[str, list[str]] = {
    "ce": [],
    "class_balanced": ["sampler=class_balanced"],
    "class_aware": ["sampler=class_aware"],
    "logit_adjusted": ["loss=logit_adjusted"],
    "drw": ["loss=drw"],
}
LABELS = {
    "ce": "CE (plain shuffle)",
    "class_balanced": "CE + class-balanced sampler (inverse freq.)",
    "class_aware": "CE + class-aware sampler",
    "logit_adjusted": "logit-adjusted CE (tau=1)",
    "drw": "DRW (effective-number weights from 80% of epochs)",
}
RARE_K = 3


def common_overrides(args: argparse.Namespace) -> list[str]:
    return grid_overrides(args, f"dataset.imbalance_factor={args.imbalance_factor}", "logger=csv")


def rare_recall(metrics: dict, class_names: list[str], counts: np.ndarray) -> float:
    """Mean test recall of the RARE_K classes with the fewest TRAINING images."""
    names = unique_metric_names(class_names)
    rarest = np.argsort(counts, kind="stable")[:RARE_K]
    return float(np.mean([metrics[f"test/recall/{names[c]}"] for c in rarest]))


def run_all(args: argparse.Namespace, results_path) -> None:
    base = common_overrides(args)
    datamodule = instantiate(compose_cfg([*base, f"paths.output_dir={args.out / 'probe'}"]).dataset)
    datamodule.setup("fit")
    counts = datamodule.train_class_counts
    print(
        f"train counts (LT, IF={args.imbalance_factor}): {counts.tolist()}  test: "
        f"{np.bincount(datamodule.splits.test.targets).tolist()}",
        flush=True,
    )
    run_grid(
        {m: METHODS[m] for m in args.arms},
        args.seeds,
        base,
        args.out,
        results_path,
        lambda metrics: {
            "rare3_recall": rare_recall(metrics, datamodule.class_names, counts),
            "train_counts": counts.tolist(),
        },
    )


def print_table(rows: list[dict], args: argparse.Namespace) -> None:
    grouped = by_arm(rows)
    print(
        f"\n{len(rows)} runs, IF={args.imbalance_factor}, {args.epochs} epochs; {cpu_model()}, {os.cpu_count()} "
        f"CPUs, torch {torch.__version__}, lightning {L.__version__}; load avg during runs {load_range(rows)}"
    )
    print("\n| method | seeds | test top-1 (%) | balanced acc (%) | recall, 3 rarest classes (%) | min/run |")
    print("|---|---|---|---|---|---|")
    for method in [m for m in METHODS if m in grouped]:
        group = grouped[method]
        cells = [mean_std([r[key] for r in group]) for key in ("acc_top1", "balanced_acc", "rare3_recall")]
        minutes = statistics.mean(r["seconds"] for r in group) / 60
        print(f"| {LABELS[method]} | {len(group)} | {' | '.join(cells)} | {minutes:.1f} |")
    print(
        "| *published, NOT measured here*: CIFAR-10-LT IF=100, ResNet-32, 200 epochs, full data — CE "
        "| | | *~70-72* | | |"
    )
    print("| *published, NOT measured here*: same setting, logit adjustment (Menon et al. 2021) | | | *~78* | | |")
    if "ce" not in grouped or len(grouped) < 2:
        print("balanced_acc_gain_vs_ce=nan")
        return
    ce = statistics.mean(r["balanced_acc"] for r in grouped["ce"])
    others = {m: statistics.mean(r["balanced_acc"] for r in g) for m, g in grouped.items() if m != "ce"}
    best = max(others, key=others.get)
    print(f"best balanced accuracy: {best} ({100 * others[best]:.1f}%) vs CE ({100 * ce:.1f}%)")
    print(f"balanced_acc_gain_vs_ce={others[best] - ce:+.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_grid_arguments(parser, list(METHODS), seeds=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--imbalance-factor", type=float, default=10)
    args = parser.parse_args()
    results_path = prepare_out(parser, args, "imbalance")
    print(f"command: python {shlex.join(sys.argv)}\nresults: {results_path}", flush=True)
    if not args.table_only:
        run_all(args, results_path)
    print_table(load_results(results_path), args)


if __name__ == "__main__":
    main()
