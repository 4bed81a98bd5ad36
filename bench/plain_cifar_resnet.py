"""The baseline of bench/time_to_accuracy.py: CIFAR-10 training as a user writes it without litvision.

A plain PyTorch script, deliberately independent of litvision (it imports nothing from it):
the official pickles read into tensors, all training images used, per-batch augmentation on
tensors (reflect-pad 4 + random 32x32 crop + horizontal flip), a standard small ResNet (the
DAWNBench ResNet-9 of Myrtle.ai; ``--width 32`` by default, the same network and recipe as
``experiment=cifar10_cpu``: the fastest small ResNet recipe for this CPU that we know), SGD with
Nesterov momentum, OneCycle, label smoothing 0.1, channels-last, fp32 (``--bf16`` for autocast).

After every epoch it evaluates the test set and prints one line
``epoch=E train_end=<unix time> eval_s=<evaluation seconds so far> test_acc=<top-1>`` so that
the caller can take the time at which the target accuracy was first reached, without the time
spent evaluating (a real script would have to pay it: this favours the baseline).

    python bench/plain_cifar_resnet.py --data ../shared/data/cifar10-subset [--epochs 20] [--width 32]
"""

from __future__ import annotations

import argparse
import pickle
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

MEAN = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1)
STD = torch.tensor([0.2470, 0.2435, 0.2616]).view(1, 3, 1, 1)


def load_batches(folder: Path, names: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = [], []
    for name in names:
        with open(folder / name, "rb") as f:
            batch = pickle.load(f, encoding="bytes")  # the official files are trusted pickles
        images.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.extend(batch[b"labels"])
    x = torch.from_numpy(np.concatenate(images)).float().div_(255)
    return (x - MEAN) / STD, torch.tensor(labels)


def conv_bn(c_in: int, c_out: int, pool: bool = False) -> nn.Sequential:
    layers = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class Residual(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.body = nn.Sequential(conv_bn(c, c), conv_bn(c, c))

    def forward(self, x):
        return x + self.body(x)


class ResNet9(nn.Module):
    def __init__(self, width: int = 32, num_classes: int = 10) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            conv_bn(3, w),
            conv_bn(w, 2 * w, pool=True),
            Residual(2 * w),
            conv_bn(2 * w, 4 * w, pool=True),
            conv_bn(4 * w, 8 * w, pool=True),
            Residual(8 * w),
            nn.AdaptiveMaxPool2d(1),
            nn.Flatten(),
        )
        self.fc = nn.Linear(8 * w, num_classes, bias=False)

    def forward(self, x):
        return self.fc(self.features(x)) * 0.125


def augment(x: torch.Tensor) -> torch.Tensor:
    """Reflect-pad 4, a random 32x32 crop per image, a random horizontal flip per image."""
    padded = F.pad(x, (4, 4, 4, 4), mode="reflect")
    offsets = torch.randint(0, 9, (len(x), 2))
    out = torch.stack([padded[i, :, dy : dy + 32, dx : dx + 32] for i, (dy, dx) in enumerate(offsets.tolist())])
    flip = torch.rand(len(x)) < 0.5
    out[flip] = out[flip].flip(-1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="folder holding cifar-10-batches-py/")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.2)
    parser.add_argument("--bf16", action="store_true", help="torch.autocast(cpu, bfloat16) for the forward pass")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)

    folder = Path(args.data) / "cifar-10-batches-py"
    x_train, y_train = load_batches(folder, [f"data_batch_{i}" for i in range(1, 6)])
    x_test, y_test = load_batches(folder, ["test_batch"])
    model = ResNet9(args.width).to(memory_format=torch.channels_last)
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    optimizer = torch.optim.SGD(
        [{"params": decay, "weight_decay": 5e-4}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr,
        momentum=0.9,
        nesterov=True,
    )
    steps_per_epoch = -(-len(x_train) // args.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=args.lr, total_steps=args.epochs * steps_per_epoch, pct_start=0.25, anneal_strategy="linear"
    )
    criterion = nn.CrossEntropyLoss(label_smoothing=0.1)
    eval_seconds = 0.0
    for epoch in range(args.epochs):
        model.train()
        for idx in torch.randperm(len(x_train)).split(args.batch_size):
            images = augment(x_train[idx]).contiguous(memory_format=torch.channels_last)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
                logits = model(images)
            loss = criterion(logits.float(), y_train[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
        train_end = time.time()
        model.eval()
        correct = 0
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            for images, labels in zip(x_test.split(500), y_test.split(500), strict=True):
                correct += int((model(images.contiguous(memory_format=torch.channels_last)).argmax(1) == labels).sum())
        eval_seconds += time.time() - train_end
        print(
            f"epoch={epoch} train_end={train_end:.3f} eval_s={eval_seconds:.3f} test_acc={correct / len(y_test):.4f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
