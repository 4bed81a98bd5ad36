"""Reliability diagram (calibration) of each val/test epoch, as an image in W&B."""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_only


class ReliabilityDiagram(L.Callback):
    """Log ``<split>/reliability_diagram``: accuracy vs confidence per bin, against the diagonal.

    The numbers come from the classifier's ``ece`` metric (``val/ece``, ``test/ece``:
    :class:`~litvision.lightning_modules.metrics.calibration.LogitCalibrationError`), whose last
    compute kept its bins from all ranks; nothing is recomputed. A no-op without a W&B logger.
    """

    def __init__(self, splits: tuple[str, ...] = ("val", "test")) -> None:
        self.splits = tuple(splits)

    # *_end (not *_epoch_end): callback epoch-end hooks run before the module's, which computes the metric
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking and "val" in self.splits:
            self._log(trainer, pl_module, "val")

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if getattr(pl_module, "test_prefix", "test/") != "test/":
            return  # an extra test set (test_sets=[...]): this report is of the main test split
        if "test" in self.splits:
            self._log(trainer, pl_module, "test")

    @rank_zero_only
    def _log(self, trainer: L.Trainer, pl_module: L.LightningModule, split: str) -> None:
        loggers = [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]
        bins = _reliability_of(pl_module, split)
        if not loggers or bins is None:
            return
        ece = trainer.callback_metrics.get(f"{split}/ece")
        image = reliability_plot(bins, split, None if ece is None else float(ece))
        for logger in loggers:
            logger.experiment.log({f"{split}/reliability_diagram": image, "trainer/global_step": trainer.global_step})


def _reliability_of(pl_module: L.LightningModule, split: str) -> dict[str, Any] | None:
    metrics = getattr(pl_module, f"{split}_metrics", None)
    if metrics is None or "ece" not in metrics:
        return None
    return getattr(metrics["ece"], "reliability", None)


def reliability_plot(bins: dict[str, Any], split: str, ece: float | None):
    """Bars: accuracy per confidence bin (empty bins left out); line: perfect calibration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import wandb

    n_bins = len(bins["count"])
    width = 1.0 / n_bins
    lefts = [i * width for i in range(n_bins)]
    filled = [i for i in range(n_bins) if bins["count"][i] > 0]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(5, 6), height_ratios=[3, 1], sharex=True)
    top.bar(
        [lefts[i] for i in filled],
        [float(bins["accuracy"][i]) for i in filled],
        width=width,
        align="edge",
        edgecolor="black",
        color="tab:blue",
        label="accuracy",
    )
    top.bar(
        [lefts[i] for i in filled],
        [float(bins["confidence"][i] - bins["accuracy"][i]) for i in filled],
        bottom=[float(bins["accuracy"][i]) for i in filled],
        width=width,
        align="edge",
        color="tab:red",
        alpha=0.3,
        label="gap to confidence",
    )
    top.plot([0, 1], [0, 1], "k--", label="perfectly calibrated")
    top.set_ylabel("accuracy")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.legend(loc="upper left", fontsize=8)
    top.set_title(f"{split} reliability" + ("" if ece is None else f" (ECE {ece:.4f})"))
    bottom.bar(lefts, [float(c) for c in bins["count"]], width=width, align="edge", color="gray", edgecolor="black")
    bottom.set_xlabel("top-1 confidence")
    bottom.set_ylabel("images")
    fig.tight_layout()
    image = wandb.Image(fig)
    plt.close(fig)
    return image
