"""Test-only callback: hold a run at the start of training until a file appears (a run "still running").

``+callbacks.wait._target_=tests.helpers.wait_for_file.WaitForFile +callbacks.wait.path=/tmp/go``
"""

from __future__ import annotations

import time
from pathlib import Path

import lightning as L


class WaitForFile(L.Callback):
    def __init__(self, path: str, timeout_s: float = 300.0) -> None:
        self.path, self.timeout_s = Path(path), timeout_s

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        deadline = time.monotonic() + self.timeout_s
        while not self.path.exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.path} did not appear within {self.timeout_s} s")
            time.sleep(0.05)
