"""Per-epoch train vs val gap (``train/val_gap``, ``train/val_loss_gap``), and a warning when the model memorises."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import lightning as L
import torch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EpochGaps:
    """One validated epoch, as the monitor saw it."""

    epoch: int
    val_loss: float | None
    train_loss: float | None
    acc_gap: float | None  # train top-1 - val top-1


def memorising(history: list[EpochGaps], patience: int = 3, max_gap: float = 0.3) -> str | None:
    """Why the run looks like memorisation at its last epoch, or None.

    Two signs, either is enough:

    - **the loss trend**: ``val/loss`` has not improved on its best for ``patience`` validations
      in a row while the training loss kept falling (the loss gap widened since the best
      epoch). A dip of one or two epochs, as a high learning rate gives (the README's recipe at
      epochs 6-7), recovers and is not it.
    - **an accuracy gap no augmentation explains**: train top-1 more than ``max_gap`` above val
      top-1. Training accuracy is measured on the augmented batches as they are trained on, so
      a gap of 10-20 points is ordinary for a small training set (the README's recipe ends at
      ~0.2); ``max_gap`` defaults to 0.3.
    """
    last = history[-1]
    if last.acc_gap is not None and last.acc_gap > max_gap:
        return (
            f"train top-1 is {last.acc_gap:.3f} above val top-1 (train/val_gap > "
            f"callbacks.overfitting_monitor.max_gap={max_gap})"
        )
    losses = [h for h in history if h.val_loss is not None and h.train_loss is not None]
    if len(losses) <= patience or losses[-1] is not last:
        return None
    best = min(losses, key=lambda h: _losses(h)[0])
    since_best = [h for h in losses if h.epoch > best.epoch]
    if len(since_best) < patience:
        return None
    (last_val, last_train), (best_val, best_train) = _losses(last), _losses(best)
    if last_train < best_train and last_val - last_train > best_val - best_train:
        return (
            f"val/loss has not improved for {len(since_best)} epochs (best {best_val:.3f} at epoch "
            f"{best.epoch}, now {last_val:.3f}) while the training loss fell from {best_train:.3f} "
            f"to {last_train:.3f}"
        )
    return None


def _losses(epoch: EpochGaps) -> tuple[float, float]:
    """``(val_loss, train_loss)`` of an epoch that has both (the only ones memorising() compares)."""
    assert epoch.val_loss is not None and epoch.train_loss is not None
    return epoch.val_loss, epoch.train_loss


class OverfittingMonitor(L.Callback):
    """Log how much better the model does on its training data than on validation, every epoch,
    and warn (once per run) when it is memorising its training set (:func:`memorising`).

    Definitions (epoch e, logged at the end of its training epoch, after its validation):

    - ``train/val_gap`` = ``train/acc_top1`` - ``val/acc_top1``: top-1 accuracy over epoch e's
      training batches as they were trained on (augmented, train mode, the weights changing
      during the epoch: the running accuracy the classifier logs) minus top-1 of the end-of-epoch
      model on the validation split. Positive = better on training data. Not logged when
      Mixup/CutMix is on (training accuracy is then over mixed images, not comparable).
    - ``train/val_loss_gap`` = ``val/loss`` - ``train/loss`` (epoch mean). ``val/loss`` is always
      plain cross-entropy; the training loss is the configured one (label smoothing, class
      weights, mixing), so the gap's *level* is only meaningful with plain cross-entropy; its
      *trend*, which the warning uses, is meaningful with any of them.

    To stop training on the gap, add Lightning's EarlyStopping: ``callbacks=[default,early_stopping]
    callbacks.early_stopping.monitor=train/val_gap callbacks.early_stopping.divergence_threshold=0.3``
    (``conf/callbacks/early_stopping.yaml``).

    Args:
        patience: validations without a new best ``val/loss`` (while the training loss falls) before warning.
        max_gap: warn at once when the accuracy gap is above this (0.3 = 30 points of top-1).
    """

    def __init__(self, patience: int = 3, max_gap: float = 0.3) -> None:
        self.patience = patience
        self.max_gap = max_gap
        self.history: list[EpochGaps] = []
        self.warned = False
        self._validated_epoch: int | None = None
        self._said_mixing = False

    def state_dict(self) -> dict[str, Any]:
        """The epochs seen so far, so a resumed run judges the trend over the whole run."""
        return {
            "history": [[h.epoch, h.val_loss, h.train_loss, h.acc_gap] for h in self.history],
            "warned": self.warned,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = [EpochGaps(*row) for row in state_dict.get("history", [])]
        self.warned = bool(state_dict.get("warned", False))

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._validated_epoch = trainer.current_epoch

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Runs before the classifier's own on_train_epoch_end, which computes (and resets) the
        # training accuracy; computing the collection here first is the same number (torchmetrics
        # caches it until reset) and syncs it across ranks once, on every rank.
        if self._validated_epoch != trainer.current_epoch:
            return  # no validation this epoch (check_val_every_n_epoch > 1)
        val_acc, val_loss = trainer.callback_metrics.get("val/acc_top1"), trainer.callback_metrics.get("val/loss")
        train_loss = trainer.callback_metrics.get("train/loss_epoch")
        gaps: dict[str, float] = {}
        train_acc = self._train_accuracy(pl_module)
        if train_acc is not None and val_acc is not None:
            gaps["train/val_gap"] = train_acc - float(val_acc)
        if train_loss is not None and val_loss is not None:
            gaps["train/val_loss_gap"] = float(val_loss) - float(train_loss)
        for key, value in gaps.items():
            pl_module.log(key, value, on_step=False, on_epoch=True)
        self.history = [h for h in self.history if h.epoch < trainer.current_epoch]
        self.history.append(
            EpochGaps(
                trainer.current_epoch,
                None if val_loss is None else float(val_loss),
                None if train_loss is None else float(train_loss),
                gaps.get("train/val_gap"),
            )
        )
        reason = memorising(self.history, self.patience, self.max_gap)
        if reason and not self.warned and trainer.is_global_zero:
            log.warning(
                "epoch %d: the model is memorising its training set: %s. Consider more augmentation or "
                "regularisation, fewer epochs, or early stopping (callbacks=[default,early_stopping]). "
                "Said once; train/val_gap and train/val_loss_gap are logged every epoch.",
                trainer.current_epoch,
                reason,
            )
        self.warned = self.warned or reason is not None

    def _train_accuracy(self, pl_module: L.LightningModule) -> float | None:
        metrics = getattr(pl_module, "train_metrics", None)
        if metrics is None or getattr(metrics, "prefix", None) != "train/":
            if metrics is not None and not self._said_mixing:
                log.info("OverfittingMonitor: training accuracy is over mixed images (Mixup/CutMix): no train/val_gap")
                self._said_mixing = True
            return None
        if not any(getattr(m, "update_count", 1) for m in metrics.values()):
            return None
        value = metrics.compute().get("train/acc_top1")
        return None if value is None else float(torch.as_tensor(value))
