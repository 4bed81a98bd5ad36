"""Lightning overhead vs a raw PyTorch loop on `experiment=cifar10_cpu`.

Both paths train the same architecture (same init seed), with the same data, batch size,
optimizer, LR schedule and loss, and both validate every epoch. The raw epoch runs inside the
Lightning process, at the start of each Lightning epoch, so the two strictly alternate in one
process and share whatever the machine is doing at the time. Lightning runs with all metrics,
logging (W&B offline + CSV), the progress bar and checkpointing on.

    python bench/overhead.py [--epochs 4] [--max-batches N] [--data ../shared/data/cifar10-subset] [overrides]

Last line: ``overhead_ratio=<lightning epoch time / raw epoch time>`` (median over epochs,
first epoch of each excluded as warm-up).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import lightning as L  # noqa: E402
import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.utils import instantiate  # noqa: E402

from litvision.launch.resolvers import register_resolvers  # noqa: E402
from litvision.loggers.wandb_logger import finish_wandb  # noqa: E402
from litvision.tasks.build import build_run  # noqa: E402

register_resolvers()  # conf/ uses ${lv.*} arithmetic (train.py registers them at import)


class RawLoop:
    """The same training recipe written as a plain PyTorch loop."""

    def __init__(self, cfg, datamodule, seed: int, epochs: int, max_batches: int | None = None) -> None:
        self.max_batches = max_batches
        torch.manual_seed(seed)
        reference = instantiate(cfg.model, num_classes=datamodule.num_classes, class_names=datamodule.class_names)
        # Same network and memory format (channels_last) as the Lightning path; the forward
        # is a plain nn.Module call, no Lightning machinery runs.
        reference._set_memory_format()
        self.model = reference
        self.criterion = reference.criterion
        self.optimizer = reference.optimizer_factory(reference._param_groups())
        self.datamodule = datamodule
        self.train_loader = datamodule.train_dataloader()
        self.val_loader = datamodule.val_dataloader()
        total_steps = min(len(self.train_loader), max_batches or len(self.train_loader)) * epochs
        self.scheduler = (
            instantiate(cfg.scheduler)(self.optimizer, total_steps=total_steps) if cfg.get("scheduler") else None
        )

    def epoch(self) -> float:
        start = time.perf_counter()
        self.model.train()
        for i, batch in enumerate(self.train_loader):
            if i == self.max_batches:
                break
            images, targets = self.datamodule.on_after_batch_transfer(batch, 0)
            loss = self.criterion(self.model(images), targets)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            if self.scheduler is not None:
                self.scheduler.step()
        self.model.eval()
        correct = total = 0
        with torch.no_grad():
            for i, batch in enumerate(self.val_loader):
                if i == self.max_batches:
                    break
                images, targets = self.datamodule.on_after_batch_transfer(batch, 0)
                correct += int((self.model(images).argmax(1) == targets).sum())
                total += len(targets)
        self.last_val_acc = correct / max(total, 1)
        return time.perf_counter() - start


class Interleave(L.Callback):
    """Run one raw epoch before each Lightning epoch; time the Lightning epochs in between."""

    def __init__(self, raw: RawLoop) -> None:
        self.raw = raw
        self.raw_times: list[float] = []
        self.lightning_times: list[float] = []
        self._started: float | None = None

    def _close_lightning_epoch(self) -> None:
        if self._started is not None:
            self.lightning_times.append(time.perf_counter() - self._started)
            self._started = None

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._close_lightning_epoch()
        self.raw_times.append(self.raw.epoch())
        print(
            f"epoch {trainer.current_epoch}: raw {self.raw_times[-1]:.2f}s (val acc {self.raw.last_val_acc:.3f})",
            flush=True,
        )
        self._started = time.perf_counter()

    def on_fit_end(self, trainer, pl_module) -> None:
        self._close_lightning_epoch()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "cifar10-subset"))
    parser.add_argument("--max-batches", type=int, default=None, help="cap train/val batches per epoch (quick runs)")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides")
    args = parser.parse_args()
    out = Path(tempfile.mkdtemp(prefix="litvision-overhead-"))
    overrides = [
        "experiment=cifar10_cpu",
        f"dataset.data_dir={args.data}",
        f"trainer.max_epochs={args.epochs}",
        "logger=[wandb,csv]",
        f"paths.root_dir={REPO}",
        f"paths.output_dir={out}",
        "test=false",
        *(
            [f"+trainer.limit_train_batches={args.max_batches}", f"+trainer.limit_val_batches={args.max_batches}"]
            if args.max_batches
            else []
        ),
        *args.overrides,
    ]
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=overrides)

    run = build_run(cfg)
    datamodule, model, trainer, cfg = run.datamodule, run.model, run.trainer, run.cfg
    datamodule.prepare_data()
    datamodule.setup("fit")
    raw = RawLoop(cfg, datamodule, seed=cfg.seed, epochs=args.epochs, max_batches=args.max_batches)
    interleave = Interleave(raw)
    trainer.callbacks.append(interleave)
    try:
        trainer.fit(model, datamodule=datamodule)
    finally:
        finish_wandb()

    raw_t, lit_t = interleave.raw_times[1:], interleave.lightning_times[1:]
    for i, (r, lt) in enumerate(zip(interleave.raw_times, interleave.lightning_times, strict=True)):
        print(f"epoch {i}: raw {r:.2f}s lightning {lt:.2f}s ratio {lt / r:.3f}")
    print(
        f"machine: {os.cpu_count()} CPUs, torch {torch.__version__}, lightning {L.__version__}; "
        f"per-epoch ratios (warm-up excluded): {[round(lt / r, 3) for r, lt in zip(raw_t, lit_t, strict=True)]}"
    )
    ratio = statistics.median(lt / r for r, lt in zip(raw_t, lit_t, strict=True))
    print(f"overhead_ratio={ratio:.3f}")


if __name__ == "__main__":
    main()
