"""Shared plumbing of the seeded training benchmarks (imbalance.py, recipe_ablation.py).

Both train every arm (a list of Hydra overrides) for every seed, interleaved seed-major in ONE
process so machine-load drift hits all arms alike, append one JSON line per finished run (a
killed benchmark resumes where it stopped) and print mean/std tables from those lines.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from hydra import compose, initialize_config_dir

from litvision.launch.resolvers import register_resolvers
from litvision.tasks.train import train

REPO = Path(__file__).resolve().parents[1]
QUIET = ["+trainer.enable_progress_bar=false", "+trainer.enable_model_summary=false", "~callbacks.rich_progress_bar"]


def grid_overrides(args: argparse.Namespace, *specific: str) -> list[str]:
    """The overrides every run of a grid shares: the CPU recipe on --data for args.epochs, quiet,
    then the script's own (``specific``), then the user's trailing ones (which win)."""
    return [
        "experiment=cifar10_cpu",
        f"dataset.data_dir={args.data}",
        "dataset.download=false",
        f"trainer.max_epochs={args.epochs}",
        *QUIET,
        *specific,
        *args.overrides,
    ]


def add_grid_arguments(parser: argparse.ArgumentParser, arms: list[str], seeds: list[int]) -> None:
    """--data, --seeds, --arms, --out, --table-only and trailing Hydra overrides."""
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "cifar10-subset"))
    parser.add_argument("--seeds", type=int, nargs="+", default=seeds)
    parser.add_argument("--arms", nargs="+", default=arms, choices=arms, help="which configurations to run")
    parser.add_argument("--out", type=Path, default=None, help="run folder (results.jsonl; reused to resume)")
    parser.add_argument("--table-only", action="store_true", help="only print the table of --out's results")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run")


def prepare_out(parser: argparse.ArgumentParser, args: argparse.Namespace, name: str) -> Path:
    """Check --data, create --out (default /tmp/litvision-<name>-<time>), return results.jsonl's path."""
    if not (Path(args.data) / "cifar-10-batches-py").is_dir():
        parser.error(f"no cifar-10-batches-py under --data {args.data}")
    if args.out is None:
        args.out = Path("/tmp") / f"litvision-{name}-{datetime.datetime.now():%Y-%m-%d_%H-%M-%S}"
    args.out.mkdir(parents=True, exist_ok=True)
    register_resolvers()
    return args.out / "results.jsonl"


def compose_cfg(overrides: list[str]):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose("train", overrides=[f"paths.root_dir={REPO}", *overrides])


def run_grid(
    arms: dict[str, list[str]],
    seeds: list[int],
    base: list[str],
    out: Path,
    results_path: Path,
    extra_fields: Callable[[dict], dict] = lambda metrics: {},
) -> None:
    """Train every (seed, arm) not yet in ``results_path``; one JSON line per finished run."""
    done = {(r["arm"], r["seed"]) for r in load_results(results_path)}
    for seed in seeds:
        for arm, overrides in arms.items():
            if (arm, seed) in done:
                continue
            cfg = compose_cfg([*base, *overrides, f"seed={seed}", f"paths.output_dir={out / f'{arm}_seed{seed}'}"])
            start = time.perf_counter()
            metrics = train(cfg)
            row = {
                "arm": arm,
                "seed": seed,
                "acc_top1": metrics["test/acc_top1"],
                "balanced_acc": metrics["test/balanced_acc"],
                "val_acc_best": metrics.get("val/acc_best"),
                **extra_fields(metrics),
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


def by_arm(rows: list[dict]) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = {}
    for row in rows:
        grouped.setdefault(row["arm"], []).append(row)
    return grouped


def mean_std(values: list[float], with_range: bool = False) -> str:
    """Percent mean ± sample std (and min..max)."""
    mean = 100 * statistics.mean(values)
    std = 100 * statistics.stdev(values) if len(values) > 1 else float("nan")
    spread = f" ({100 * min(values):.1f}..{100 * max(values):.1f})" if with_range else ""
    return f"{mean:.1f} ± {std:.1f}{spread}"


def load_range(rows: list[dict]) -> str:
    loads = [r["loadavg_1min"] for r in rows if "loadavg_1min" in r]
    return f"{min(loads):.1f}..{max(loads):.1f}" if loads else "n/a"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"
