"""A W&B table of the test set's most confident mistakes (thumbnail, true, predicted, confidence)."""

from __future__ import annotations

import heapq
import itertools
from typing import Any, cast

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import WandbLogger

from litvision.utils.names import escape_name
from litvision.utils.thumbnails import same_size

# (confidence, tie-breaker, thumbnail HWC uint8, true class, predicted class)
Mistake = tuple[float, int, np.ndarray, int, int]


class MisclassifiedExamples(L.Callback):
    """Log ``test/worst_mistakes``: the wrong predictions made with the highest confidence.

    The W&B table has the columns ``image, true, predicted, confidence``; the thumbnails are
    also logged, in the same order, as the image list ``test/worst_mistakes_images`` (offline
    runs keep them that way, see :meth:`_log_table`).

    At most ``per_class`` rows per true class (so one collapsed class does not fill the
    table) and ``max_rows`` in all, most confident first. The logits are taken from the
    classifier's own forward pass in ``test_step`` (a forward hook: no second pass over the
    test set); only mistakes that can still enter the table are turned into thumbnails, so
    memory stays at ``per_class`` thumbnails per class per rank. Under DDP each rank keeps its
    candidates and rank zero merges them. A no-op without a W&B logger.

    Args:
        per_class: cap on rows per true class.
        max_rows: cap on rows in all.
        thumbnail_size: longest side of the thumbnails, in pixels (images are shrunk, never enlarged).
    """

    def __init__(self, per_class: int = 3, max_rows: int = 100, thumbnail_size: int = 96) -> None:
        self.per_class = per_class
        self.max_rows = max_rows
        self.thumbnail_size = thumbnail_size
        self.rows: list[tuple[np.ndarray, str, str, float]] = []
        self._heaps: dict[int, list[Mistake]] = {}
        self._hook: Any = None
        self._logits: torch.Tensor | None = None
        self._counter = itertools.count()

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if getattr(pl_module, "test_prefix", "test/") != "test/":
            return  # an extra test set (test_sets=[...]): this report is of the main test split
        self._heaps, self.rows = {}, []
        if any(isinstance(lg, WandbLogger) for lg in trainer.loggers):
            self._hook = pl_module.register_forward_hook(self._keep_logits)

    def _keep_logits(self, module: torch.nn.Module, inputs: Any, output: torch.Tensor) -> None:
        self._logits = output.detach()

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        self._logits = None  # an all-unreadable batch makes no forward pass: do not reuse the last one

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self._hook is None or self._logits is None:
            return
        images, targets = batch[0], batch[1]  # (a third element: group codes, groups=PATH)
        confidence, predicted = self._logits.float().softmax(dim=1).max(dim=1)
        for i in torch.nonzero(predicted != targets).flatten().tolist():
            true, conf = int(targets[i]), float(confidence[i])
            heap = self._heaps.setdefault(true, [])
            if len(heap) >= self.per_class and conf <= heap[0][0]:
                continue  # not confident enough to enter this class's rows
            thumb = self._thumbnail(images[i], trainer)
            item = (conf, next(self._counter), thumb, true, int(predicted[i]))
            if len(heap) < self.per_class:
                heapq.heappush(heap, item)
            else:
                heapq.heapreplace(heap, item)

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._hook is None:
            return
        self._hook.remove()
        self._hook = None
        mine = [item for heap in self._heaps.values() for item in heap]
        everyone = _gather(mine, trainer.world_size)
        if not trainer.is_global_zero:
            return
        per_class: dict[int, list[Mistake]] = {}
        for item in sorted(everyone, key=lambda m: -m[0]):
            rows = per_class.setdefault(item[3], [])
            if len(rows) < self.per_class:
                rows.append(item)
        chosen = sorted((m for rows in per_class.values() for m in rows), key=lambda m: -m[0])[: self.max_rows]
        # class_names: set by our LightningModules (nn.Module.__getattr__ types it Tensor | Module)
        names = [escape_name(name) for name in cast("list[str]", pl_module.class_names)]
        self.rows = [(thumb, names[true], names[pred], conf) for conf, _, thumb, true, pred in chosen]
        self._log_table(trainer)

    def _log_table(self, trainer: L.Trainer) -> None:
        """The table, plus the same thumbnails in row order as an image list.

        W&B keeps a run table's images only in a ``run_table`` artifact staged outside the run
        dir; offline, the run's own table file holds the word "Image" instead
        (wandb/wandb#4611). The image list is written under ``<run dir>/wandb/.../media/images``
        and syncs like any image, so an offline run keeps its thumbnails.
        """
        import wandb

        thumbs = same_size([thumb for thumb, _, _, _ in self.rows])  # one size: W&B warns otherwise
        images = [
            wandb.Image(thumb, caption=f"{true} -> {pred} ({conf:.2f})")
            for thumb, (_, true, pred, conf) in zip(thumbs, self.rows, strict=True)
        ]
        table = wandb.Table(columns=["image", "true", "predicted", "confidence"])
        for image, (_, true, pred, conf) in zip(images, self.rows, strict=True):
            table.add_data(image, true, pred, conf)
        payload = {"test/worst_mistakes": table, "trainer/global_step": trainer.global_step}
        if images:
            payload["test/worst_mistakes_images"] = images
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.experiment.log(payload)

    def _thumbnail(self, image: torch.Tensor, trainer: L.Trainer) -> np.ndarray:
        """The image as the loader gave it (normalisation undone), shrunk to ``thumbnail_size``."""
        image = image.detach().float().unsqueeze(0)
        datamodule = trainer.datamodule  # type: ignore[attr-defined]  # Lightning sets it; Trainer does not declare it
        normalize = getattr(datamodule, "normalize", None) if datamodule is not None else None
        if normalize is not None and hasattr(normalize, "inv_std"):
            image = image / normalize.inv_std.to(image.device) + normalize.mean.to(image.device)
        height, width = image.shape[-2:]
        scale = self.thumbnail_size / max(height, width)
        if scale < 1:
            size = (max(1, round(height * scale)), max(1, round(width * scale)))
            image = torch.nn.functional.interpolate(
                image, size=size, mode="bilinear", antialias=True, align_corners=False
            )
        thumb = image[0].clamp(0, 255).round().byte().permute(1, 2, 0).contiguous().cpu().numpy()
        return thumb[:, :, 0] if thumb.shape[2] == 1 else thumb


def _gather(items: list[Mistake], world_size: int) -> list[Mistake]:
    if world_size == 1 or not torch.distributed.is_initialized():
        return items
    parts: list[Any] = [None] * world_size
    torch.distributed.all_gather_object(parts, items)
    return [item for part in parts for item in part]
