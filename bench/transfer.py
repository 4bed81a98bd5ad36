"""Transfer on the real CIFAR-10 subset: pretrain on five classes, fine-tune on the other five.

    PYTHONPATH=... nice python bench/transfer.py [--epochs 12] [--seeds 0 1 2]

The source model (airplane, automobile, bird, cat, deer) is a litvision ImageClassifier trained
from scratch; its backbone (the head dropped) is written as a .pth and every target run starts from
it through ``backbone.weights=`` (the library's loader: a new head for the target classes). The
target classes (dog, frog, horse, ship, truck) get 10, 25, 50 and all training images per class;
each strategy (scratch = ``full`` from random weights, ``linear_probe``, ``full``, ``freeze_unfreeze``,
``layer_decay``) is built from the same ``finetune`` configs the run builds (conf/finetune/) and
trained with the same optimizer, schedule, epochs and seeds. Score: balanced accuracy on the target
classes' test images, mean +- std over the seeds. Sized for 2 busy CPU cores: SmallCNN width 16 at
32 px, flip augmentation, batch 32. Last line: ``transfer_gain_25=<best strategy - scratch, points>``.
"""

from __future__ import annotations

import argparse
import pickle
import statistics
import tempfile
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, Dataset

from litvision.lightning_modules.classifier import ImageClassifier

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10-subset" / "cifar-10-batches-py"
CONF = Path(__file__).resolve().parents[1] / "conf" / "finetune"
SOURCE, TARGET = [0, 1, 2, 3, 4], [5, 6, 7, 8, 9]
MEAN, STD = torch.tensor([0.49, 0.48, 0.45]).view(3, 1, 1), torch.tensor([0.25, 0.24, 0.26]).view(3, 1, 1)
BACKBONE = {"_target_": "litvision.lightning_modules.backbones.build_backbone", "name": "small_cnn", "width": 16}
STRATEGIES = ["scratch", "linear_probe", "full", "freeze_unfreeze", "layer_decay"]


def load(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    files = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    images, labels = [], []
    for name in files:
        with open(DATA / name, "rb") as f:
            batch = pickle.load(f, encoding="latin1")
        images.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.extend(batch["labels"])
    x = (torch.from_numpy(np.concatenate(images)).float() / 255 - MEAN) / STD
    return x, torch.tensor(labels)


def subset(x, y, classes, per_class: int | None, seed: int):
    generator = torch.Generator().manual_seed(seed)
    keep = []
    for cls in classes:
        index = torch.nonzero(y == cls).flatten()
        index = index[torch.randperm(len(index), generator=generator)]
        keep.append(index[:per_class] if per_class else index)
    index = torch.cat(keep)
    mapping = {cls: i for i, cls in enumerate(classes)}
    return x[index], torch.tensor([mapping[int(c)] for c in y[index]])


class Flipped(Dataset):
    """Random horizontal flip (the only augmentation)."""

    def __init__(self, x, y) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i):
        image = self.x[i]
        return (image.flip(-1) if torch.rand(()) < 0.5 else image), self.y[i]


def finetune_config(strategy: str) -> dict | None:
    if strategy == "scratch":
        return None
    config = OmegaConf.to_container(OmegaConf.load(CONF / f"{strategy}.yaml"))
    if strategy == "freeze_unfreeze":
        config["unfreeze_at_epoch"] = 3
    return config


def train(x, y, strategy: str | None, weights: str | None, epochs: int, seed: int, lr: float) -> ImageClassifier:
    L.seed_everything(seed, workers=True, verbose=False)
    backbone = {**BACKBONE, **({"weights": weights} if weights else {})}
    model = ImageClassifier(
        backbone,
        optimizer={"_target_": "torch.optim.AdamW", "lr": lr, "weight_decay": 0.05},
        scheduler={"_target_": "litvision.lightning_modules.training.schedulers.warmup_cosine", "warmup_fraction": 0.1},
        finetune=finetune_config(strategy) if strategy else None,
        num_classes=5,
        channels_last=False,
    )
    if weights:
        model.load_backbone_weights()
    batch = 32 if len(y) >= 64 else 16
    loader = DataLoader(Flipped(x, y), batch_size=batch, shuffle=True, drop_last=len(y) > batch)
    trainer = L.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, train_dataloaders=loader)
    return model


@torch.no_grad()
def balanced_accuracy(model: ImageClassifier, x, y) -> float:
    model.eval()
    predicted = torch.cat([model(x[i : i + 500]).argmax(1) for i in range(0, len(x), 500)])
    return 100 * float(np.mean([(predicted[y == c] == c).float().mean() for c in range(5)]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--source-epochs", type=int, default=15)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 25, 50, 0], help="0 = all")
    args = parser.parse_args()
    torch.set_num_threads(2)
    import logging

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    logging.getLogger("litvision").setLevel(logging.WARNING)
    start = time.perf_counter()
    train_x, train_y = load("train")
    test_x, test_y = load("test")
    source_x, source_y = subset(train_x, train_y, SOURCE, None, 0)
    target_test = subset(test_x, test_y, TARGET, None, 0)
    source = train(source_x, source_y, None, None, args.source_epochs, 0, 3e-3)
    source_acc = balanced_accuracy(source, *subset(test_x, test_y, SOURCE, None, 0))
    print(f"source model: {len(source_y)} images of classes {SOURCE}, test balanced acc {source_acc:.1f}%", flush=True)
    folder = Path(tempfile.mkdtemp())
    weights = folder / "source_backbone.pth"
    torch.save({k: v for k, v in source.net.state_dict().items() if not k.startswith("fc.")}, weights)
    results: dict[tuple[int, str], list[float]] = {}
    for size in args.sizes:
        for strategy in STRATEGIES:
            for seed in args.seeds:
                x, y = subset(train_x, train_y, TARGET, size or None, 100 + seed)
                # linear probe: a head alone learns faster with a larger LR (as in practice)
                lr = 1e-2 if strategy == "linear_probe" else 3e-3
                model = train(x, y, strategy, None if strategy == "scratch" else str(weights), args.epochs, seed, lr)
                results.setdefault((size, strategy), []).append(balanced_accuracy(model, *target_test))
            scores = results[(size, strategy)]
            spread = statistics.stdev(scores) if len(scores) > 1 else 0.0
            label = size or f"all ({len(y) // 5})"
            print(f"per_class={label:>9} {strategy:>16}: {statistics.mean(scores):5.1f} +- {spread:4.1f}", flush=True)
    print(f"\n| images per class | {' | '.join(STRATEGIES)} |\n|---|{'---|' * len(STRATEGIES)}")
    for size in args.sizes:
        cells = [
            f"{statistics.mean(results[(size, s)]):.1f} ± {statistics.stdev(results[(size, s)]) if len(args.seeds) > 1 else 0:.1f}"
            for s in STRATEGIES
        ]
        print(f"| {size or 'all'} | {' | '.join(cells)} |")
    print(f"wall time {time.perf_counter() - start:.0f} s")
    size = 25 if 25 in args.sizes else args.sizes[0]
    best = max(statistics.mean(results[(size, s)]) for s in STRATEGIES[1:])
    print(f"transfer_gain_25={best - statistics.mean(results[(size, 'scratch')]):.1f}")


if __name__ == "__main__":
    main()
