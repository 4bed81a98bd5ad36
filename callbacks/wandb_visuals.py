"""Confusion-matrix plot and per-class recall table for W&B."""

from __future__ import annotations

from typing import Any, cast

import lightning as L
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_only

from litvision.utils.names import escape_name


class WandbVisuals(L.Callback):
    """After each val/test epoch, log the split's confusion matrix and per-class table.

    Reads ``pl_module.epoch_results`` (filled by the classifier at epoch end), so nothing
    is recomputed. Large label spaces (ImageNet) skip the plot: 1000x1000 cells are not
    readable, and the per-class table is what matters there.
    """

    def __init__(self, max_classes_for_plot: int = 100) -> None:
        self.max_classes_for_plot = max_classes_for_plot

    # *_end (not *_epoch_end): callback epoch-end hooks run before the module's, which is
    # where the results are computed.
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._log(trainer, pl_module, "val")

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # "test", or an extra test set's name (test_sets=[cifar10_1]: cifar10_1/per_class)
        self._log(trainer, pl_module, getattr(pl_module, "test_prefix", "test/").rstrip("/"))

    @rank_zero_only
    def _log(self, trainer: L.Trainer, pl_module: L.LightningModule, split: str) -> None:
        loggers = [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]
        results: dict[str, Any] | None = getattr(pl_module, "epoch_results", {}).get(split)
        if not loggers or results is None:
            return
        import wandb

        # class_names: set by our LightningModules (nn.Module.__getattr__ types it Tensor | Module)
        names = [escape_name(name) for name in cast("list[str]", pl_module.class_names)]
        confmat = results["confmat"].long()
        support = confmat.sum(dim=1)
        correct = confmat.diag()
        rows = [
            [name, int(n), int(c), (float(c) / float(n)) if n else None]
            for name, n, c in zip(names, support.tolist(), correct.tolist(), strict=True)
        ]
        payload = {f"{split}/per_class": wandb.Table(columns=["class", "support", "correct", "recall"], data=rows)}
        if len(names) <= self.max_classes_for_plot:
            payload[f"{split}/confusion_matrix"] = _confusion_plot(confmat, names, split)
        for logger in loggers:
            logger.experiment.log({**payload, "trainer/global_step": trainer.global_step})


def _confusion_plot(confmat, names, split: str):
    """Row-normalised confusion matrix as an image (works offline, unlike wandb.plot)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import wandb

    norm = confmat.float() / confmat.sum(dim=1, keepdim=True).clamp(min=1)
    size = max(4, 0.45 * len(names))
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(norm.numpy(), cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{split} confusion (row-normalised)")
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    image = wandb.Image(fig)
    plt.close(fig)
    return image
