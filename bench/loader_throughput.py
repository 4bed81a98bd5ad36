"""Training-batch throughput: device-resident batched augmentation vs the per-image Albumentations DataLoader.

Both paths turn the same images (the real CIFAR-10 subset's training split, 4,194 images) into
the same kind of training batch: a random translation of up to 4 pixels with reflect-101
borders and a random horizontal flip, normalised float32 (B, 3, 32, 32) on the training device
(here the CPU), in the channels-last layout the classifier's forward converts every batch to:

* loader: ``CIFAR10DataModule`` with ``conf/augmentation/cifar_standard.yaml`` (Albumentations
  PadIfNeeded + RandomCrop + HorizontalFlip, one image at a time), the DataLoader's uint8
  batches normalised after transfer (``dataset=cifar10``);
* batched: ``DeviceCIFAR10DataModule`` (``dataset=cifar10_device``): index batches from the same
  sampler, images gathered, translated and flipped for the whole batch at once
  (``BatchAugment(translate=4, flip="random")``), then normalised.

Both run in this one process with no loader workers and the same number of torch threads
(``--threads``, default 1: the per-core cost, least disturbed by other jobs on a shared
machine); their epochs alternate (loader, batched, loader, ...) and every epoch draws every
training image once. The figure is the median over epochs of the per-epoch ratio of images/s.
``--workers N`` adds, for context only, the loader's wall-clock rate with N worker processes.

    python bench/loader_throughput.py [--epochs 5] [--batch-size 256] [--data ../shared/data/cifar10-subset]

Last line: ``batched_vs_loader=<batched images/s / loader images/s>``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from litvision.datamodules.cifar10 import CIFAR10DataModule
from litvision.datamodules.device_resident import DeviceCIFAR10DataModule
from litvision.datamodules.transforms.batch_augment import BatchAugment

REPO = Path(__file__).resolve().parents[1]
NORMALIZE = {"mean": [0.4914, 0.4822, 0.4465], "std": [0.2470, 0.2435, 0.2616]}


def albumentations_train_pipeline():
    """The per-image pipeline of augmentation=cifar_standard, composed from the package's configs."""
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=["augmentation=cifar_standard"])
    return instantiate(cfg.augmentation.train)


def epoch_rate(datamodule, loader, device: torch.device) -> float:
    """Images/s of one pass: every batch moved to ``device`` and through the transfer hook."""
    count = 0
    start = time.perf_counter()
    for batch in loader:
        batch = (
            batch._replace(indices=batch.indices.to(device))
            if hasattr(batch, "_replace")
            else [t.to(device) for t in batch]
        )
        images, targets = datamodule.on_after_batch_transfer(batch, 0)
        images = images.contiguous(memory_format=torch.channels_last)  # what the classifier's forward does first
        count += len(targets)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    assert images.dtype == torch.float32 and images.shape[1:] == (3, 32, 32)
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--workers", type=int, default=0, help="also time the loader with this many workers (context)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "cifar10-subset"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    common = {
        "data_dir": args.data,
        "download": False,
        "batch_size": args.batch_size,
        "normalize": NORMALIZE,
        "seed": 0,
    }

    loader_dm = CIFAR10DataModule(train_transform=albumentations_train_pipeline(), num_workers=0, **common)
    batched_dm = DeviceCIFAR10DataModule(batch_augment=BatchAugment(translate=4, flip="random"), **common)
    for dm in (loader_dm, batched_dm):
        dm.setup("fit")
    assert len(loader_dm.splits.train) == len(batched_dm.splits.train)
    loader, batched = loader_dm.train_dataloader(), batched_dm.train_dataloader()
    epoch_rate(batched_dm, batched, device)  # warm-up: the one-time copy of the split to the device

    ratios = []
    for epoch in range(args.epochs):
        for dl in (loader, batched):
            dl.sampler.set_epoch(epoch)
        loader_rate = epoch_rate(loader_dm, loader, device)
        batched_rate = epoch_rate(batched_dm, batched, device)
        ratios.append(batched_rate / loader_rate)
        print(
            f"epoch {epoch}: loader {loader_rate:,.0f} img/s, batched {batched_rate:,.0f} img/s, ratio {ratios[-1]:.1f}",
            flush=True,
        )

    if args.workers:
        workers_dm = CIFAR10DataModule(
            train_transform=albumentations_train_pipeline(), num_workers=args.workers, **common
        )
        workers_dm.setup("fit")
        workers_loader = workers_dm.train_dataloader()
        rates = [epoch_rate(workers_dm, workers_loader, device) for _ in range(2)]
        print(
            f"context: loader with {args.workers} workers, wall clock: {rates[-1]:,.0f} img/s (after a warm-up epoch)"
        )

    print(
        f"machine: {os.cpu_count()} CPUs, device {device}, torch {torch.__version__}, {args.threads} torch thread(s), "
        f"batch {args.batch_size}, {len(batched_dm.splits.train)} images per epoch; per-epoch ratios {[round(r, 1) for r in ratios]}"
    )
    print(f"batched_vs_loader={statistics.median(ratios):.1f}")


if __name__ == "__main__":
    main()
