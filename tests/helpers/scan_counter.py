"""Test-only callback: count how often this process lists directories of a data tree.

Injected into a real ``train.py`` run with ``+callbacks.scan_counter._target_=tests.helpers.scan_counter.ScanCounter
+callbacks.scan_counter.tree=ROOT +callbacks.scan_counter.out_dir=DIR``. A Python audit hook sees
every ``os.scandir`` of the process (how the file index lists a tree); at the start of training
the count is written to ``DIR/scans_rank{R}.json``. Callbacks are built before ``trainer.fit``,
so the hook is in place before ``prepare_data``/``setup`` index anything.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import lightning as L


class ScanCounter(L.Callback):
    def __init__(self, tree: str, out_dir: str) -> None:
        self.tree = os.path.realpath(tree)
        self.out_dir = Path(out_dir)
        self.scans = 0
        sys.addaudithook(self._audit)

    def _audit(self, event: str, args: tuple) -> None:
        if event == "os.scandir" and args and isinstance(args[0], (str, bytes, os.PathLike)):
            path = os.path.realpath(os.fsdecode(args[0]))
            if path == self.tree or path.startswith(self.tree + os.sep):
                self.scans += 1

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / f"scans_rank{trainer.global_rank}.json").write_text(json.dumps({"scans": self.scans}))
