"""Test-only callback: record the labels each rank actually trained on, per epoch.

Injected into a real ``train.py`` run with
``+callbacks.label_recorder._target_=tests.helpers.label_recorder.LabelRecorder
+callbacks.label_recorder.out_dir=DIR``; it writes ``DIR/labels_epoch{E}_rank{R}.npy`` so
a test can check what the processes saw without trusting the sampler.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np


class LabelRecorder(L.Callback):
    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)
        self._labels: list[np.ndarray] = []

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._labels = []

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._labels.append(batch[1].detach().cpu().numpy())

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / f"labels_epoch{trainer.current_epoch}_rank{trainer.global_rank}.npy"
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as handle:
            np.save(handle, np.concatenate(self._labels) if self._labels else np.zeros(0, np.int64))
        os.replace(tmp, path)
