"""Per-epoch train vs val gap (``train/val_gap``, ``train/val_loss_gap``), warned past a threshold."""

from __future__ import annotations

import logging

import lightning as L
import torch

log = logging.getLogger(__name__)


class OverfittingMonitor(L.Callback):
    """Log how much better the model does on its training data than on validation, every epoch.

    Definitions (epoch e, logged at the end of its training epoch, after its validation):

    - ``train/val_gap`` = ``train/acc_top1`` - ``val/acc_top1``: top-1 accuracy over epoch e's
      training batches as they were trained on (augmented, train mode, the weights changing
      during the epoch: the running accuracy the classifier logs) minus top-1 of the end-of-epoch
      model on the validation split. Positive = better on training data. Not logged when
      Mixup/CutMix is on (training accuracy is then over mixed images, not comparable).
    - ``train/val_loss_gap`` = ``val/loss`` - ``train/loss`` (epoch mean). ``val/loss`` is always
      plain cross-entropy; the training loss is the configured one, so this gap is only
      meaningful with ``loss=cross_entropy`` and no label smoothing or mixing.

    A warning is logged when ``train/val_gap`` > ``max_gap``. To stop training on it, add
    Lightning's EarlyStopping: ``callbacks=[default,early_stopping]
    callbacks.early_stopping.monitor=train/val_gap callbacks.early_stopping.divergence_threshold=0.3``
    (``conf/callbacks/early_stopping.yaml``).

    Args:
        max_gap: warn when the accuracy gap is above this (0.15 = 15 points of top-1).
    """

    def __init__(self, max_gap: float = 0.15) -> None:
        self.max_gap = max_gap
        self._validated_epoch: int | None = None
        self._said_mixing = False

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
        gaps: dict[str, float] = {}
        train_acc = self._train_accuracy(pl_module)
        if train_acc is not None and val_acc is not None:
            gaps["train/val_gap"] = train_acc - float(val_acc)
        train_loss = trainer.callback_metrics.get("train/loss_epoch")
        if train_loss is not None and val_loss is not None:
            gaps["train/val_loss_gap"] = float(val_loss) - float(train_loss)
        for key, value in gaps.items():
            pl_module.log(key, value, on_step=False, on_epoch=True)
        gap = gaps.get("train/val_gap")
        if gap is not None and gap > self.max_gap and trainer.is_global_zero:
            log.warning(
                "epoch %d: train/val_gap = %.3f (train top-1 %.3f, val top-1 %.3f) is above %s: the model is "
                "memorising its training set. Consider more augmentation/regularisation, fewer epochs, or early "
                "stopping (callbacks=[default,early_stopping]).",
                trainer.current_epoch,
                gap,
                train_acc,
                float(val_acc),
                self.max_gap,
            )

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
