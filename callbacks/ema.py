"""Exponential moving average of the weights: Lightning's ``EMAWeightAveraging``, tested as averaged.

Lightning's callback (2.6.6) keeps the average in an ``AveragedModel``, swaps it in for every
validation epoch, writes it as the checkpoint's ``state_dict`` (the raw weights go to
``current_model_state``, the average's step count to ``averaging_state``) and restores both
on resume. So validation metrics, ``val/acc_best``, the best-checkpoint choice, ``eval.py``
and ``load_from_checkpoint`` all see the averaged weights, and a resumed run continues the
same average.

One gap, fixed here: after ``fit`` the callback still holds its averaged model, and
``trainer.test(ckpt_path=best)`` (what ``train.py`` does after fitting) calls the
callback's ``on_load_checkpoint``, which loads ``current_model_state`` (the RAW weights)
into the module: the test split would be scored on the raw weights while validation was
scored on the average. Outside fitting we leave the module with the checkpoint's
``state_dict``, the average.
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
