"""Test-only callback: end a fit cleanly after a given epoch, as if the job had been killed then.

``+callbacks.stop._target_=tests.helpers.stop_after_epoch.StopAfterEpoch +callbacks.stop.epoch=0``: the
epoch's checkpoint is written (validation ran) and the run stops with ``max_epochs`` still planned,
so the LR schedule is the one of the full run (a run with a smaller max_epochs would plan another).
"""

from __future__ import annotations

import lightning as L


class StopAfterEpoch(L.Callback):
    def __init__(self, epoch: int = 0) -> None:
        self.epoch = epoch

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch >= self.epoch:
            trainer.should_stop = True
