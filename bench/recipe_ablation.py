"""Recipe components on the real CIFAR-10 subset at equal epochs: what each one does at this scale.

Configurations (each on top of the same baseline; ``all`` = every component together):

* ``baseline``: ``experiment=cifar10_cpu`` (pad-crop-flip, label smoothing 0.1, SGD + OneCycle)
  with a ResNet-9 at width 16 for ``--epochs`` epochs;
* ``mixup_cutmix``: ``mixing=mixup_cutmix`` (Mixup 0.2 / CutMix 1.0, switch 0.5, torchvision's values);
* ``trivialaugment``: ``augmentation=cifar_trivialaugment`` (TrivialAugment-Wide after crop/flip);
* ``random_erasing``: ``augmentation.random_erasing=0.25``;
* ``ema``: ``callbacks=[default,ema]`` with ``callbacks.ema.decay=--ema-decay``;
* ``all``: the four together.

Same split, same seeds for every configuration; runs are interleaved seed-major (seed 0: every
configuration, then seed 1, ...) in ONE process, so machine-load drift hits all alike.
Reported: test balanced accuracy (macro recall) and top-1 of the best-by-val checkpoint,
mean +/- sample std and min..max over the seeds, as measured.

    python bench/recipe_ablation.py [--epochs 10] [--seeds 0 1 2] [--width 16] [--ema-decay 0.99] [--threads 1]
                                    [--arms baseline ema ...] [--out DIR] [extra Hydra overrides]
    python bench/recipe_ablation.py --table-only --out DIR   # re-print the table of a finished/killed run

Last line: ``all_vs_baseline_balanced_acc=<mean(all) - mean(baseline)>``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shlex
import statistics
import sys

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import lightning as L
import torch
from seeded_grid import (
    add_grid_arguments,
    by_arm,
    cpu_model,
    grid_overrides,
    load_range,
    load_results,
    mean_std,
    prepare_out,
    run_grid,
)

MIXING = ["mixing=mixup_cutmix"]
TRIVIALAUGMENT = ["augmentation=cifar_trivialaugment"]
ERASING = ["augmentation.random_erasing=0.25"]


def ema(decay: float) -> list[str]:
    return ["callbacks=[default,ema]", f"callbacks.ema.decay={decay}"]


def configs(args: argparse.Namespace) -> dict[str, list[str]]:
    return {
        "baseline": [],
        "mixup_cutmix": MIXING,
        "trivialaugment": TRIVIALAUGMENT,
        "random_erasing": ERASING,
        "ema": ema(args.ema_decay),
        "all": [*MIXING, *TRIVIALAUGMENT, *ERASING, *ema(args.ema_decay)],
    }


LABELS = {
    "baseline": "baseline (pad-crop-flip, label smoothing 0.1)",
    "mixup_cutmix": "+ Mixup/CutMix (0.2 / 1.0)",
    "trivialaugment": "+ TrivialAugment-Wide",
    "random_erasing": "+ random erasing (p 0.25)",
    "ema": "+ EMA of weights",
    "all": "all four",
}


def common_overrides(args: argparse.Namespace) -> list[str]:
    return grid_overrides(
        args, f"model.backbone.width={args.width}", "+callbacks.metrics_summary.print_table=false", "logger=none"
    )


def print_table(rows: list[dict], args: argparse.Namespace) -> None:
    grouped = by_arm(rows)
    print(
        f"\n{len(rows)} runs: ResNet-9 width {args.width}, {args.epochs} epochs, real CIFAR-10 subset "
        f"(4,194 train / 466 val / 846 test); {cpu_model()}, {os.cpu_count()} CPUs; torch {torch.__version__}, "
        f"lightning {L.__version__}; {torch.get_num_threads()} torch thread(s); load avg during runs "
        f"{load_range(rows)}"
    )
    baseline = [r["balanced_acc"] for r in grouped.get("baseline", [])]
    print(
        "\n| configuration | seeds | test balanced acc (%) mean ± std (min..max) | test top-1 (%) | "
        "Δ balanced vs baseline (points) | min/run |"
    )
    print("|---|---|---|---|---|---|")
    for name in [c for c in LABELS if c in grouped]:
        group = grouped[name]
        balanced = [r["balanced_acc"] for r in group]
        delta = f"{100 * (statistics.mean(balanced) - statistics.mean(baseline)):+.1f}" if baseline else "n/a"
        minutes = statistics.mean(r["seconds"] for r in group) / 60
        print(
            f"| {LABELS[name]} | {len(group)} | {mean_std(balanced, True)} "
            f"| {mean_std([r['acc_top1'] for r in group], True)} | {delta} | {minutes:.1f} |"
        )
    if baseline and "all" in grouped:
        gain = statistics.mean(r["balanced_acc"] for r in grouped["all"]) - statistics.mean(baseline)
        print(f"all_vs_baseline_balanced_acc={gain:+.4f}")
    else:
        print("all_vs_baseline_balanced_acc=nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_grid_arguments(parser, list(LABELS), seeds=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--width", type=int, default=16, help="ResNet-9 width (32 in experiment=cifar10_cpu)")
    parser.add_argument("--ema-decay", type=float, default=0.99, help="per optimizer step (33 steps per epoch here)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads; 1 on a shared machine (2 threads spinning against other "
        "processes made a step 4-5x slower here)",
    )
    args = parser.parse_args()
    results_path = prepare_out(parser, args, "recipe-ablation")
    torch.set_num_threads(args.threads)
    print(
        f"command: python {shlex.join(sys.argv)}\ndate: {datetime.datetime.now().isoformat(timespec='seconds')}\n"
        f"load average at start: {os.getloadavg()}\nresults: {results_path}",
        flush=True,
    )
    if not args.table_only:
        table = configs(args)
        run_grid({name: table[name] for name in args.arms}, args.seeds, common_overrides(args), args.out, results_path)
    print(f"load average at end: {os.getloadavg()}")
    print_table(load_results(results_path), args)


if __name__ == "__main__":
    main()
