"""Write ``<run dir>/metrics.json``: the flat dict of final metrics other tools read."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.utilities import rank_zero_only

from litvision.utils.atomic_write import write_json_atomic

SPLIT_PREFIXES = ("val/", "test/")


def _as_float(value: Any) -> float | None:
    number = float(value.item() if hasattr(value, "item") else value)
    return None if math.isnan(number) or math.isinf(number) else number


class MetricsSummary(L.Callback):
    """Keep the latest ``val/*`` and ``test/*`` values and write them to ``path``.

    The file is rewritten (atomically, by rank zero only) after every validation and
    test run, so a crashed or killed run still leaves its last complete metrics.
    ``print_table=True`` prints every metric as a table at the end of testing; the entry
    scripts print a short result after W&B's closing lines instead (``launch/final_summary.py``).
    """

    def __init__(self, path: str | Path = "metrics.json", print_table: bool = False) -> None:
        self.path = Path(path)
        self.print_table = print_table
        self.metrics: dict[str, float | None] = {}

    def _collect(self, trainer: L.Trainer, prefix: str) -> None:
        for key, value in trainer.callback_metrics.items():
            if key.startswith(prefix):
                self.metrics[key] = _as_float(value)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self._collect(trainer, "val/")
        self.metrics["epoch"] = trainer.current_epoch
        self._write()

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._collect(trainer, "test/")
        self._write()
        if self.print_table:
            self._print()

    @rank_zero_only
    def _write(self) -> None:
        write_json_atomic(self.path, self.metrics)

    @rank_zero_only
    def _print(self) -> None:
        from rich.console import Console
        from rich.table import Table

        table = Table(title="final metrics")
        table.add_column("metric")
        table.add_column("value", justify="right")
        for key in sorted(self.metrics):
            if "/recall/" in key and len(self.metrics) > 60:
                continue  # 1000 ImageNet classes: those live in metrics.json and W&B
            value = self.metrics[key]
            table.add_row(key, "-" if value is None else f"{value:.4f}")
        console = Console()
        console.print(table)
        console.print(f"written to {self.path}", soft_wrap=True)  # a path is not wrapped inside a word
