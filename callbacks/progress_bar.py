"""The training progress bar: Lightning's RichProgressBar plus the latest validation accuracy and the run's ETA."""

from __future__ import annotations

import time
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import RichProgressBar


def format_duration(seconds: float) -> str:
    """``1:02:03`` / ``4:05``: as Rich's own per-epoch time columns write it."""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class RunProgressBar(RichProgressBar):
    """Lightning's RichProgressBar with two more fields after the training loss (and without
    Lightning's ``v_num``, the logger's version):

    - the latest ``val/acc_top1`` (and ``val/balanced_acc`` when it is ``balanced_gap`` or more away
      from it: on a balanced val split they are the same number, on an imbalanced one the
      difference is the news);
    - ``run ETA``: time left until the last epoch's validation ends, from this process's rate so
      far (training and validation time per training batch, measured from the first training
      batch; a resumed run counts only the batches it still has to do). The epoch bar's own
      time column covers the current epoch only.

    Epochs are counted as Lightning counts them, from 0 (``Epoch 0/19`` ... ``Epoch 19/19`` for
    20 epochs): the same numbers as ``best_epochNNN.ckpt`` and ``metrics.json``'s ``epoch``.
    """

    def __init__(self, *args: Any, balanced_gap: float = 0.01, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.balanced_gap = balanced_gap
        self._started: float | None = None
        self._batches_done = 0  # by this process (a resumed run starts at 0)
        self._position = 0  # training batches of the whole fit behind us, resumed epochs included

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self._started, self._batches_done = None, 0

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        super().on_train_batch_start(trainer, pl_module, batch, batch_idx)
        if self._started is None:  # the first batch: start-up, data set-up and sanity check are behind
            self._started = time.monotonic()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._batches_done += 1
        per_epoch = trainer.num_training_batches
        if isinstance(per_epoch, int):
            self._position = trainer.current_epoch * per_epoch + batch_idx + 1
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)  # the logger's version (a W&B run id suffix): not news during training
        items.update(validation_fields(trainer.callback_metrics, self.balanced_gap))
        eta = self.run_eta(trainer)
        if eta is not None:
            items["run ETA"] = format_duration(eta)
        return items

    def run_eta(self, trainer: L.Trainer) -> float | None:
        """Seconds left in the fit at this process's rate so far; None when it cannot be known."""
        per_epoch = trainer.num_training_batches  # inf for a loader without a length
        if self._started is None or not self._batches_done or not isinstance(per_epoch, int):
            return None
        if not trainer.max_epochs or trainer.max_epochs < 0:
            return None
        total = per_epoch * trainer.max_epochs
        if trainer.max_steps and trainer.max_steps > 0:
            total = min(total, trainer.max_steps * trainer.accumulate_grad_batches)
        rate = (time.monotonic() - self._started) / self._batches_done
        return max(total - self._position, 0) * rate


def validation_fields(metrics: dict[str, Any], balanced_gap: float) -> dict[str, float]:
    """``val/acc_top1`` (and ``val/balanced_acc`` when at least ``balanced_gap`` away) from the latest validation."""
    fields: dict[str, float] = {}
    top1, balanced = metrics.get("val/acc_top1"), metrics.get("val/balanced_acc")
    if top1 is not None:
        fields["val/acc_top1"] = float(top1)
    if balanced is not None and (top1 is None or abs(float(balanced) - float(top1)) >= balanced_gap):
        fields["val/balanced_acc"] = float(balanced)
    return fields
