"""Exponential moving average of the weights: Lightning's ``EMAWeightAveraging``, tested as averaged.

Lightning's callback (2.6.6) keeps the average in an ``AveragedModel``, swaps it in for every
validation epoch, writes it as the checkpoint's ``state_dict`` (the raw weights go to
``current_model_state``, the average's step count to ``averaging_state``) and restores both
on resume. So validation metrics, ``val/acc_best``, the best-checkpoint choice, ``eval.py``
and ``load_from_checkpoint`` all see the averaged weights, and a resumed run continues the
same average.

Two gaps, fixed here, both because the callback still holds its averaged model after ``fit``:

* ``trainer.test(ckpt_path=best)`` (what ``train.py`` does after fitting) calls the callback's
  ``on_load_checkpoint``, which loads ``current_model_state`` (the RAW weights) into the
  module: the test split would be scored on the raw weights while validation was scored on
  the average;
* ``trainer.validate(ckpt_path=...)`` swaps the average of the END of fit into the module
  for the epoch, whatever checkpoint was loaded.

Outside fitting we leave the module with what was loaded: the checkpoint's ``state_dict``,
the average of that checkpoint.
"""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import EMAWeightAveraging
from lightning.pytorch.trainer.states import TrainerFn


class EMA(EMAWeightAveraging):
    """``EMAWeightAveraging`` (``decay``, ``update_every_n_steps``, ``update_starting_at_step``,
    ``use_buffers``, ...) whose averaged weights are also the ones tested after fitting."""

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        if trainer.state.fn != TrainerFn.FITTING:
            return  # test/validate/predict a checkpoint: keep its state_dict, the average
        super().on_load_checkpoint(trainer, pl_module, checkpoint)

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == TrainerFn.FITTING:  # trainer.validate() after fit: evaluate what was loaded
            super().on_validation_epoch_start(trainer, pl_module)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == TrainerFn.FITTING:
            super().on_validation_epoch_end(trainer, pl_module)
