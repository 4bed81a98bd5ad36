"""Test-only callback: record the sample ids each rank loads in train/val/test, per stage.

Injected into a real ``train.py`` run with
``+callbacks.id_recorder._target_=tests.helpers.id_recorder.IdRecorder +callbacks.id_recorder.out_dir=DIR``.
The ids are those of the dataset positions the loader's sampler yields on this rank; the
labels of the batches that actually arrive are recorded beside them, so a test can check
that the batches really were those samples (same labels, same order) and not trust the
sampler alone. Writes ``DIR/{stage}_rank{R}.json`` = {"ids": [...], "id_labels": [...], "batch_labels": [...]}.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import lightning as L


class IdRecorder(L.Callback):
    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)
        self._records: dict[str, dict[str, list]] = {}

    def _start(self, stage: str, loader: Any) -> None:
        dataset = loader.dataset
        indices = list(loader.sampler) if loader.sampler is not None else list(range(len(dataset)))
        self._records[stage] = {
            "ids": [str(dataset.ids[i]) for i in indices],
            "id_labels": [int(dataset.targets[i]) for i in indices],
            "batch_labels": [],
        }

    def _batch(self, stage: str, batch: Any) -> None:
        self._records[stage]["batch_labels"] += batch[1].detach().cpu().tolist()

    def _end(self, trainer: L.Trainer, stage: str) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / f"{stage}_rank{trainer.global_rank}.json"
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self._records[stage]))
        os.replace(tmp, path)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start("train", trainer.train_dataloader)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._batch("train", batch)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._end(trainer, "train")

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._start("val", trainer.val_dataloaders)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if not trainer.sanity_checking:
            self._batch("val", batch)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._end(trainer, "val")

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start("test", trainer.test_dataloaders)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._batch("test", batch)

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._end(trainer, "test")
