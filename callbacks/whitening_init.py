"""Initialise whitening layers (``WhiteningConv``) from training images when a fit starts."""

from __future__ import annotations

import logging

import lightning as L
import torch

from litvision.lightning_modules.backbones.airbench import WhiteningConv

log = logging.getLogger(__name__)


class WhiteningInit(L.Callback):
    """Set every :class:`WhiteningConv` of the model from the patch statistics of training images.

    Runs in ``on_fit_start`` of a FRESH fit only: a resumed fit (``ckpt_path``) keeps the
    checkpoint's weights. The images are the first training batches exactly as the model
    will see them (through the DataModule's transfer hooks: augmented and normalised); a
    whitening layer must therefore be the network's first layer. Under DDP every rank
    computes from its own share and rank 0's result is broadcast, so all replicas start equal.

    Args:
        num_images: how many training images to estimate the patch covariance from
            (airbench uses 5000; the 12x12 covariance of 2x2 patches needs far fewer).
    """

    def __init__(self, num_images: int = 5000) -> None:
        if num_images < 1:
            raise ValueError(f"num_images must be >= 1, got {num_images}")
        self.num_images = num_images

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        layers = [module for module in pl_module.modules() if isinstance(module, WhiteningConv)]
        if not layers:
            return
        if trainer.ckpt_path:
            log.info("resumed fit: whitening layers keep their checkpointed weights")
            return
        images = self._training_images(trainer)
        for layer in layers:
            layer.init_whitening(images)
            if trainer.world_size > 1:
                layer.weight.data.copy_(trainer.strategy.broadcast(layer.weight.data, src=0))
        log.info("whitening layer(s) initialised from %d training images", len(images))

    @torch.no_grad()
    def _training_images(self, trainer: L.Trainer) -> torch.Tensor:
        datamodule = trainer.datamodule  # type: ignore[attr-defined]  # Lightning sets it; Trainer does not declare it
        loader = datamodule.train_dataloader() if datamodule is not None else trainer.train_dataloader
        assert loader is not None  # on_fit_start: a fit has its training data
        batches, count = [], 0
        for batch in loader:
            images, _ = trainer.strategy.batch_to_device(batch)
            batches.append(images.float())
            count += len(images)
            if count >= self.num_images:
                break
        return torch.cat(batches)[: self.num_images]
