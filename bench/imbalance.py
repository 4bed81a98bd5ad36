"""Class-imbalance methods on a real long-tailed CIFAR-10 (CIFAR-10-LT from the shared subset).

Same recipe (``experiment=cifar10_cpu`` with fewer epochs), same split and seeds for every
method; only the sampler or the loss changes. Training split: the real CIFAR-10 subset cut
to the exponential long-tailed profile (IF=10 by default); evaluated on the balanced real
test set (best-by-val checkpoint, val is balanced too). Runs are interleaved seed-major
(seed 0: every method, then seed 1, ...) in ONE process, so machine load drifts hit all
methods alike.

    python bench/imbalance.py [--epochs 8] [--seeds 0 1 2] [--imbalance-factor 10]
                              [--methods ce class_balanced ...] [extra Hydra overrides]
    python bench/imbalance.py --table-only --out DIR   # re-print the table of a finished/killed run

Prints a Markdown table (mean +/- std over seeds): test top-1, balanced accuracy (macro
recall) and the mean recall of the three classes rarest in training. Last line:
``balanced_acc_gain_vs_ce=<best method's mean balanced accuracy - CE's>``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import lightning as L  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.utils import instantiate  # noqa: E402

import train as train_script  # noqa: E402
from litvision.lightning_modules.metrics import unique_metric_names  # noqa: E402

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
    return [
        "experiment=cifar10_cpu",
        f"dataset.data_dir={args.data}",
        f"dataset.imbalance_factor={args.imbalance_factor}",
        "dataset.download=false",
        f"trainer.max_epochs={args.epochs}",
        "+trainer.enable_progress_bar=false",
        "+trainer.enable_model_summary=false",
        "~callbacks.rich_progress_bar",
        "logger=csv",
        f"paths.root_dir={REPO}",
        *args.overrides,
    ]


def compose_cfg(overrides: list[str]):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose("train", overrides=overrides)


def rare_recall(metrics: dict, class_names: list[str], counts: np.ndarray) -> float:
    """Mean test recall of the RARE_K classes with the fewest TRAINING images."""
    names = unique_metric_names(class_names)
    rarest = np.argsort(counts, kind="stable")[:RARE_K]
    return float(np.mean([metrics[f"test/recall/{names[c]}"] for c in rarest]))


def run_all(args: argparse.Namespace, results_path: Path) -> None:
    base = common_overrides(args)
    probe = compose_cfg([*base, f"paths.output_dir={args.out / 'probe'}"])
    datamodule = instantiate(probe.dataset)
    datamodule.setup("fit")
    counts = datamodule.train_class_counts
    print(f"train counts (LT, IF={args.imbalance_factor}): {counts.tolist()}  test: "
          f"{np.bincount(datamodule.splits.test.targets).tolist()}", flush=True)
    done = {(r["method"], r["seed"]) for r in load_results(results_path)}
    for seed in args.seeds:
        for method in args.methods:
            if (method, seed) in done:
                continue
            out_dir = args.out / f"{method}_seed{seed}"
            cfg = compose_cfg([*base, *METHODS[method], f"seed={seed}", f"paths.output_dir={out_dir}"])
            start = time.perf_counter()
            metrics = train_script.train(cfg)
            row = {
                "method": method,
                "seed": seed,
                "acc_top1": metrics["test/acc_top1"],
                "balanced_acc": metrics["test/balanced_acc"],
                "rare3_recall": rare_recall(metrics, datamodule.class_names, counts),
                "val_acc_best": metrics.get("val/acc_best"),
                "seconds": time.perf_counter() - start,
                "train_counts": counts.tolist(),
            }
            with open(results_path, "a") as handle:
                handle.write(json.dumps(row) + "\n")
            print(f"RESULT {json.dumps(row)}", flush=True)


def load_results(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def mean_std(values: list[float]) -> str:
    mean = 100 * statistics.mean(values)
    std = 100 * statistics.stdev(values) if len(values) > 1 else float("nan")
    return f"{mean:.1f} ± {std:.1f}"


def print_table(rows: list[dict], args: argparse.Namespace) -> None:
    by_method: dict[str, list[dict]] = {}
    for row in rows:
        by_method.setdefault(row["method"], []).append(row)
    print(f"\n{len(rows)} runs, IF={args.imbalance_factor}, {args.epochs} epochs; "
          f"machine: {os.cpu_count()} CPUs, torch {torch.__version__}, lightning {L.__version__}")
    print("\n| method | seeds | test top-1 (%) | balanced acc (%) | recall, 3 rarest classes (%) | min/run |")
    print("|---|---|---|---|---|---|")
    for method in [m for m in METHODS if m in by_method]:
        group = by_method[method]
        cells = [mean_std([r[key] for r in group]) for key in ("acc_top1", "balanced_acc", "rare3_recall")]
        minutes = statistics.mean(r["seconds"] for r in group) / 60
        print(f"| {LABELS[method]} | {len(group)} | {' | '.join(cells)} | {minutes:.1f} |")
    print("| *published, NOT measured here*: CIFAR-10-LT IF=100, ResNet-32, 200 epochs, full data — CE "
          "| | | *~70-72* | | |")
    print("| *published, NOT measured here*: same setting, logit adjustment (Menon et al. 2021) "
          "| | | *~78* | | |")
    if "ce" not in by_method or len(by_method) < 2:
        print("balanced_acc_gain_vs_ce=nan")
        return
    ce = statistics.mean(r["balanced_acc"] for r in by_method["ce"])
    others = {m: statistics.mean(r["balanced_acc"] for r in g) for m, g in by_method.items() if m != "ce"}
    best = max(others, key=others.get)
    print(f"best balanced accuracy: {best} ({100 * others[best]:.1f}%) vs CE ({100 * ce:.1f}%)")
    print(f"balanced_acc_gain_vs_ce={others[best] - ce:+.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "cifar10-subset"))
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--imbalance-factor", type=float, default=10)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--out", type=Path, default=None, help="run folder (results.jsonl; reused to resume)")
    parser.add_argument("--table-only", action="store_true", help="only print the table of --out's results")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run")
    args = parser.parse_args()
    if not (Path(args.data) / "cifar-10-batches-py").is_dir():
        parser.error(f"no cifar-10-batches-py under --data {args.data}")
    if args.out is None:
        stamp = datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
        args.out = Path("/tmp") / f"litvision-imbalance-{stamp}"
    args.out.mkdir(parents=True, exist_ok=True)
    results_path = args.out / "results.jsonl"
    print(f"results: {results_path}", flush=True)
    if not args.table_only:
        run_all(args, results_path)
    print_table(load_results(results_path), args)


if __name__ == "__main__":
    main()
