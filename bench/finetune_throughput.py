"""Images/s of a training epoch: linear_probe vs full fine-tuning, and full fine-tuning vs training from scratch.

    PYTHONPATH=... nice python bench/finetune_throughput.py [--repeats 3]

One process, the runs alternating (probe, full, scratch, probe, ...) so that load on the machine hits
all of them alike; the median of the repeats. Each run is a Lightning fit of one epoch of the
classifier as the run builds it (``finetune=`` configs from conf/finetune/), ResNet-18 at 64 px on
random images (the data pipeline is not what is measured), starting from a weight file for the
fine-tuning runs. Frozen parts get no backward pass (requires_grad=False: autograd skips them), which
is where linear_probe's gain comes from; full fine-tuning and scratch do the same work.
Last line: ``probe_vs_full_throughput=<ratio>``.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, TensorDataset

from litvision.lightning_modules.classifier import ImageClassifier

CONF = Path(__file__).resolve().parents[1] / "conf" / "finetune"
BACKBONE = {"_target_": "litvision.lightning_modules.backbones.build_backbone", "name": "resnet18"}


class Timer(L.Callback):
    """Wall time of the training batches (the first one, warm-up, left out)."""

    def __init__(self) -> None:
        self.images, self.seconds, self.start = 0, 0.0, 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if batch_idx > 0:
            self.seconds += time.perf_counter() - self.start
            self.images += len(batch[1])


def images_per_second(strategy: str, weights: str | None, loader: DataLoader) -> float:
    finetune = None if strategy == "scratch" else OmegaConf.to_container(OmegaConf.load(CONF / f"{strategy}.yaml"))
    model = ImageClassifier(
        {**BACKBONE, **({"weights": weights} if weights else {})},
        optimizer={"_target_": "torch.optim.SGD", "lr": 0.01, "momentum": 0.9},
        finetune=finetune,
        num_classes=10,
    )
    if weights:
        model.load_backbone_weights()
    timer = Timer()
    trainer = L.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
    )
    trainer.fit(model, train_dataloaders=loader)
    return timer.images / timer.seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batches", type=int, default=8)
    args = parser.parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    logging.getLogger("litvision").setLevel(logging.WARNING)
    torch.manual_seed(0)
    images = torch.randn(32 * (args.batches + 1), 3, 64, 64)
    loader = DataLoader(TensorDataset(images, torch.randint(0, 10, (len(images),))), batch_size=32)
    weights = Path(tempfile.mkdtemp()) / "pretrained.pth"
    source = ImageClassifier(BACKBONE, num_classes=1000)
    torch.save(source.net.state_dict(), weights)  # torchvision's layout: loads with a new 10-class head
    runs: dict[str, list[float]] = {"linear_probe": [], "full": [], "scratch": []}
    for _ in range(args.repeats):
        for strategy in runs:
            rate = images_per_second(strategy, None if strategy == "scratch" else str(weights), loader)
            runs[strategy].append(rate)
    median = {strategy: statistics.median(rates) for strategy, rates in runs.items()}
    for strategy, rates in runs.items():
        print(f"{strategy:>13}: {median[strategy]:7.1f} images/s (runs: {', '.join(f'{r:.1f}' for r in rates)})")
    print(f"full_vs_scratch_throughput={median['full'] / median['scratch']:.3f}")
    print(f"probe_vs_full_throughput={median['linear_probe'] / median['full']:.2f}")


if __name__ == "__main__":
    main()
