"""Test-only callback: record a hash of every training batch's images, per rank and epoch.

Injected into a real ``train.py`` run with
``+callbacks.batch_hashes._target_=tests.helpers.batch_hash_recorder.BatchHashRecorder
+callbacks.batch_hashes.out_dir=DIR``; writes ``DIR/hashes_epoch{E}_rank{R}.json`` (a list of
hex digests, one per batch) so a test can compare what the processes' augmentation produced.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import lightning as L


class BatchHashRecorder(L.Callback):
    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)
        self._hashes: list[str] = []

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._hashes = []

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        images = batch[0].detach().cpu().contiguous().numpy()
        self._hashes.append(hashlib.sha1(images.tobytes()).hexdigest())

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / f"hashes_epoch{trainer.current_epoch}_rank{trainer.global_rank}.json"
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self._hashes))
        os.replace(tmp, path)
