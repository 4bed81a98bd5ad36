"""Time to 75% test top-1 on the real CIFAR-10 subset (CPU): ``experiment=cifar10_fast`` vs a plain script.

* ours: ``python train.py experiment=cifar10_fast dataset.data_dir=DATA logger=csv`` as a user runs it,
  timed from launch to exit (start-up, fit with validation every epoch, checkpoints, the test of
  the best checkpoint, metrics.json). It tests once, at the end, so its time to the target is the
  whole run, provided ``test/acc_top1`` in its metrics.json reaches the target (else: not reached).
* plain: ``bench/plain_cifar_resnet.py``, the hand-written PyTorch script a user writes without us
  (tensors, per-batch augmentation, ResNet-9, OneCycle; see its docstring). It evaluates the test
  set after every epoch; its time to the target is from launch to the end of the first epoch that
  reaches it, minus the time spent evaluating (an oracle stop: this favours the baseline).

The two run back to back in this one process (subprocesses, one at a time; with ``--repeats N``
the order alternates), so they share the machine's state; the load (``os.getloadavg``) is printed
before each. ``--cpu-preset`` also times ``experiment=cifar10_cpu`` (the acceptance comparison).

    python bench/time_to_accuracy.py [--repeats 1] [--target 0.75] [--data ../shared/data/cifar10-subset]
        [--plain-epochs 20] [--plain-width 32] [--plain-bf16] [--cpu-preset] [-- extra overrides for ours]

Last line: ``tta_ratio=<ours / plain>`` (median over repeats).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "NO_ALBUMENTATIONS_UPDATE": "1"}


def load() -> str:
    return "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def run_preset(experiment: str, data: str, out: Path, overrides: list[str]) -> tuple[float, float]:
    """Wall seconds of a whole ``train.py`` run and its final test top-1."""
    command = [
        sys.executable,
        str(REPO / "train.py"),
        f"experiment={experiment}",
        f"dataset.data_dir={data}",
        "logger=csv",
        f"hydra.run.dir={out}",
        *overrides,
    ]
    start = time.time()
    done = subprocess.run(command, cwd=REPO, env=ENV, capture_output=True, text=True)
    seconds = time.time() - start
    if done.returncode != 0:
        raise RuntimeError(f"{experiment} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    metrics = json.loads((out / "metrics.json").read_text())
    return seconds, metrics["test/acc_top1"]


def run_plain(data: str, target: float, epochs: int, width: int, bf16: bool) -> tuple[float, float, list[float]]:
    """Seconds from launch to the end of the first epoch at >= target (evaluation excluded), the
    accuracy then, and every epoch's accuracy; inf if the target is never reached."""
    command = [
        sys.executable,
        str(REPO / "bench" / "plain_cifar_resnet.py"),
        "--data",
        data,
        "--epochs",
        str(epochs),
        "--width",
        str(width),
        *(["--bf16"] if bf16 else []),
    ]
    start = time.time()
    done = subprocess.run(command, cwd=REPO, env=ENV, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"plain script failed:\n{done.stderr[-4000:]}")
    epochs_seen = [
        dict(item.split("=") for item in line.split()) for line in done.stdout.splitlines() if line.startswith("epoch=")
    ]
    accuracies = [float(e["test_acc"]) for e in epochs_seen]
    for e in epochs_seen:
        if float(e["test_acc"]) >= target:
            return float(e["train_end"]) - start - float(e["eval_s"]), float(e["test_acc"]), accuracies
    return math.inf, max(accuracies), accuracies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "cifar10-subset"))
    parser.add_argument("--target", type=float, default=0.75)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--plain-epochs", type=int, default=20)
    parser.add_argument("--plain-width", type=int, default=32)
    parser.add_argument("--plain-bf16", action="store_true")
    parser.add_argument("--cpu-preset", action="store_true", help="also time experiment=cifar10_cpu")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for ours")
    args = parser.parse_args()
    data = str(Path(args.data).resolve())
    work = Path(tempfile.mkdtemp(prefix="litvision-tta-"))

    ratios = []
    for repeat in range(args.repeats):
        order = ("ours", "plain") if repeat % 2 == 0 else ("plain", "ours")
        results = {}
        for which in order:
            print(f"[{repeat}] {which}: starting ({load()})", flush=True)
            if which == "ours":
                seconds, acc = run_preset("cifar10_fast", data, work / f"fast{repeat}", args.overrides)
                results["ours"] = seconds if acc >= args.target else math.inf
                print(f"[{repeat}] ours: whole run {seconds:.1f} s, test top-1 {acc:.4f}", flush=True)
            else:
                seconds, acc, curve = run_plain(data, args.target, args.plain_epochs, args.plain_width, args.plain_bf16)
                results["plain"] = seconds
                print(f"[{repeat}] plain: {seconds:.1f} s to {acc:.4f} (test top-1 per epoch: {curve})", flush=True)
        if args.cpu_preset:
            print(f"[{repeat}] cifar10_cpu: starting ({load()})", flush=True)
            seconds, acc = run_preset("cifar10_cpu", data, work / f"cpu{repeat}", [])
            print(
                f"[{repeat}] cifar10_cpu: whole run {seconds:.1f} s, test top-1 {acc:.4f}; "
                f"fast_vs_cpu_preset={results['ours'] / seconds:.3f}",
                flush=True,
            )
        ratios.append(results["ours"] / results["plain"])
        print(f"[{repeat}] ratio ours/plain = {ratios[-1]:.3f} ({load()})", flush=True)
    print(f"machine: {os.cpu_count()} CPUs; target test top-1 >= {args.target}; runs in {work}")
    print(f"tta_ratio={statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
