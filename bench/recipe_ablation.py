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
                                    [--configs baseline ema ...] [--out DIR] [extra Hydra overrides]
    python bench/recipe_ablation.py --table-only --out DIR   # re-print the table of a finished/killed run

Last line: ``all_vs_baseline_balanced_acc=<mean(all) - mean(baseline)>``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

REPO = Path(__file__).resolve().parents[1]

import lightning as L  # noqa: E402
import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402

from litvision.config_utils.resolvers import register_resolvers  # noqa: E402
from litvision.tasks.train import train  # noqa: E402

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
    return [
        "experiment=cifar10_cpu",
        f"model.backbone.width={args.width}",
        f"dataset.data_dir={args.data}",
        "dataset.download=false",
        f"trainer.max_epochs={args.epochs}",
        "+trainer.enable_progress_bar=false",
        "+trainer.enable_model_summary=false",
        "~callbacks.rich_progress_bar",
        "+callbacks.metrics_summary.print_table=false",
        "logger=none",
        f"paths.root_dir={REPO}",
        *args.overrides,
    ]


def compose_cfg(overrides: list[str]):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose("train", overrides=overrides)


def run_all(args: argparse.Namespace, results_path: Path) -> None:
    base = common_overrides(args)
    table = configs(args)
    done = {(r["config"], r["seed"]) for r in load_results(results_path)}
    for seed in args.seeds:
        for name in args.configs:
            if (name, seed) in done:
                continue
            out_dir = args.out / f"{name}_seed{seed}"
            cfg = compose_cfg([*base, *table[name], f"seed={seed}", f"paths.output_dir={out_dir}"])
            start = time.perf_counter()
            metrics = train(cfg)
            row = {
                "config": name,
                "seed": seed,
                "balanced_acc": metrics["test/balanced_acc"],
                "acc_top1": metrics["test/acc_top1"],
                "val_acc_best": metrics.get("val/acc_best"),
                "seconds": time.perf_counter() - start,
                "loadavg_1min": os.getloadavg()[0],
            }
            with open(results_path, "a") as handle:
                handle.write(json.dumps(row) + "\n")
            print(f"RESULT {json.dumps(row)}", flush=True)


def load_results(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def summary(values: list[float]) -> str:
    mean = 100 * statistics.mean(values)
    std = 100 * statistics.stdev(values) if len(values) > 1 else float("nan")
    return f"{mean:.1f} ± {std:.1f} ({100 * min(values):.1f}..{100 * max(values):.1f})"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def print_table(rows: list[dict], args: argparse.Namespace) -> None:
    by_config: dict[str, list[dict]] = {}
    for row in rows:
        by_config.setdefault(row["config"], []).append(row)
    print(f"\n{len(rows)} runs: ResNet-9 width {args.width}, {args.epochs} epochs, real CIFAR-10 subset "
          f"(4,194 train / 466 val / 846 test); {cpu_model()}, {os.cpu_count()} CPUs; torch {torch.__version__}, "
          f"lightning {L.__version__}; {torch.get_num_threads()} torch thread(s); load avg during runs "
          f"{min((r['loadavg_1min'] for r in rows), default=float('nan')):.1f}.."
          f"{max((r['loadavg_1min'] for r in rows), default=float('nan')):.1f}")
    baseline = [r["balanced_acc"] for r in by_config.get("baseline", [])]
    print("\n| configuration | seeds | test balanced acc (%) mean ± std (min..max) | test top-1 (%) | "
          "Δ balanced vs baseline (points) | min/run |")
    print("|---|---|---|---|---|---|")
    for name in [c for c in LABELS if c in by_config]:
        group = by_config[name]
        balanced = [r["balanced_acc"] for r in group]
        delta = f"{100 * (statistics.mean(balanced) - statistics.mean(baseline)):+.1f}" if baseline else "n/a"
        minutes = statistics.mean(r["seconds"] for r in group) / 60
        print(f"| {LABELS[name]} | {len(group)} | {summary(balanced)} | {summary([r['acc_top1'] for r in group])} "
              f"| {delta} | {minutes:.1f} |")
    if baseline and "all" in by_config:
        gain = statistics.mean(r["balanced_acc"] for r in by_config["all"]) - statistics.mean(baseline)
        print(f"all_vs_baseline_balanced_acc={gain:+.4f}")
    else:
        print("all_vs_baseline_balanced_acc=nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "cifar10-subset"))
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--width", type=int, default=16, help="ResNet-9 width (32 in experiment=cifar10_cpu)")
    parser.add_argument("--ema-decay", type=float, default=0.99, help="per optimizer step (33 steps per epoch here)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads; 1 on a shared machine (2 threads spinning against other "
                             "processes made a step 4-5x slower here)")
    parser.add_argument("--configs", nargs="+", default=list(LABELS), choices=list(LABELS))
    parser.add_argument("--out", type=Path, default=None, help="run folder (results.jsonl; reused to resume)")
    parser.add_argument("--table-only", action="store_true", help="only print the table of --out's results")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run")
    args = parser.parse_args()
    if not (Path(args.data) / "cifar-10-batches-py").is_dir():
        parser.error(f"no cifar-10-batches-py under --data {args.data}")
    if args.out is None:
        stamp = datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
        args.out = Path("/tmp") / f"litvision-recipe-ablation-{stamp}"
    args.out.mkdir(parents=True, exist_ok=True)
    register_resolvers()
    torch.set_num_threads(args.threads)
    results_path = args.out / "results.jsonl"
    print(f"command: python {shlex.join(sys.argv)}\ndate: {datetime.datetime.now().isoformat(timespec='seconds')}\n"
          f"load average at start: {os.getloadavg()}\nresults: {results_path}", flush=True)
    if not args.table_only:
        run_all(args, results_path)
    print(f"load average at end: {os.getloadavg()}")
    print_table(load_results(results_path), args)


if __name__ == "__main__":
    main()
