"""Report unreadable images that a DataModule skipped (``on_bad_image=skip``), once per epoch."""

from __future__ import annotations

import logging

import lightning as L

log = logging.getLogger(__name__)


class BadImageMonitor(L.Callback):
    """Log ``data/bad_images/<split>`` and warn when new unreadable files appeared this epoch.

    Works with any DataModule that has ``bad_image_counts() -> {split: count}`` (the
    class-folder/ImageNet ones); a no-op for the others. Each file's path is logged once by
    the dataset when it is first met; this adds the running count to the epoch log.
    """

    def __init__(self) -> None:
        self._reported: dict[str, int] = {}

    def _report(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        datamodule = trainer.datamodule  # type: ignore[attr-defined]  # Lightning sets it; Trainer does not declare it
        counts_fn = getattr(datamodule, "bad_image_counts", None) if datamodule else None
        if counts_fn is None or trainer.sanity_checking:
            return
        for split, count in counts_fn().items():
            new = count - self._reported.get(split, 0)
            if new > 0:
                log.warning("%s: %d unreadable image(s) skipped so far (%d new this epoch)", split, count, new)
                self._reported[split] = count
            pl_module.log(f"data/bad_images/{split}", float(count), reduce_fx="max", sync_dist=True)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # runs after the epoch's validation, so this covers the train and val files
        self._report(trainer, pl_module)

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._report(trainer, pl_module)
