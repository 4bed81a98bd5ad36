"""What atomic checkpoint writes cost: AtomicCheckpointIO vs Lightning's TorchCheckpointIO.

Both save the same checkpoint (CIFAR ResNet-18 weights + SGD momentum, ~90 MB) to the same
folder, interleaved in one process (A, B, A, B, ...) so disk cache and load drift hit both
alike. AtomicCheckpointIO adds an fsync of the file and of the folder; that is the price of
"a kill or a crash never leaves a corrupt last.ckpt" (tests/test_resume.py).

    python bench/atomic_checkpoint.py [--repeats 7]

Last line: ``atomic_save_overhead_ratio=<median atomic / median lightning>``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lightning.pytorch.plugins.io import TorchCheckpointIO

from litvision.lightning_modules.backbones import build_backbone
from litvision.plugins.atomic_checkpoint import AtomicCheckpointIO


def make_checkpoint() -> dict:
    model = build_backbone("cifar_resnet18", num_classes=10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    optimizer.step()  # creates the momentum buffers
    return {"state_dict": model.state_dict(), "optimizer_states": [optimizer.state_dict()], "epoch": 0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    checkpoint = make_checkpoint()
    plugins = {"lightning": TorchCheckpointIO(), "atomic": AtomicCheckpointIO()}
    times: dict[str, list[float]] = {name: [] for name in plugins}
    with tempfile.TemporaryDirectory(prefix="litvision-ckpt-bench-", dir=os.getcwd()) as folder:
        for repeat in range(args.repeats + 1):  # round 0 warms up the page cache and allocator
            for name, plugin in plugins.items():
                path = Path(folder) / f"{name}.ckpt"
                start = time.perf_counter()
                plugin.save_checkpoint(checkpoint, path)
                elapsed = time.perf_counter() - start
                if repeat:
                    times[name].append(elapsed)
        size_mb = (Path(folder) / "atomic.ckpt").stat().st_size / 1e6
    print(
        f"machine: {os.cpu_count()} CPUs, torch {torch.__version__}; checkpoint {size_mb:.0f} MB, "
        f"folder on the filesystem of {os.getcwd()}"
    )
    for name, values in times.items():
        print(f"{name}: median {statistics.median(values):.3f}s  all {[round(v, 3) for v in values]}")
    ratio = statistics.median(times["atomic"]) / statistics.median(times["lightning"])
    print(f"atomic_save_overhead_ratio={ratio:.3f}")


if __name__ == "__main__":
    main()
