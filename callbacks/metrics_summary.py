"""Write ``<run dir>/metrics.json``: the flat dict of final metrics other tools read."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.trainer.states import TrainerFn
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

    While fitting, a validation's metrics (and its ``epoch``) are written only once that
    validation's checkpoints are saved: at the next training hook (the ModelCheckpoint
    callbacks, which Lightning always runs last, save in ``on_validation_end`` or
    ``on_train_epoch_end``). A run that fails in between, e.g. a checkpoint save on a full
    disk, leaves the file claiming no epoch beyond the last saved checkpoint.
    ``print_table=True`` prints every metric as a table at the end of testing; the entry
    scripts print a short result after W&B's closing lines instead (``launch/final_summary.py``).
    """

    def __init__(self, path: str | Path = "metrics.json", print_table: bool = False) -> None:
        self.path = Path(path)
        self.print_table = print_table
        self.metrics: dict[str, float | None] = {}
        self._pending: dict[str, float | None] | None = None  # a validation whose checkpoints are not saved yet

    def _collect(
        self, trainer: L.Trainer, prefix: str, into: dict[str, float | None] | None = None
    ) -> dict[str, float | None]:
        """Update ``into`` (default: the metrics written so far) with the logged ``prefix*`` values."""
        into = self.metrics if into is None else into
        for key, value in trainer.callback_metrics.items():
            if key.startswith(prefix):
                into[key] = _as_float(value)
        return into

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        metrics = {**self._collect(trainer, "val/", into=dict(self.metrics)), "epoch": trainer.current_epoch}
        if trainer.state.fn == TrainerFn.FITTING:
            self._pending = metrics  # written by _commit once the checkpoints after it are saved
            return
        self.metrics = metrics
        self._write()

    def _commit(self) -> None:
        if self._pending is not None:
            self.metrics, self._pending = self._pending, None
            self._write()

    # the first hooks after the checkpoint callbacks' saves: reached only if those succeeded
    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._commit()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._commit()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._commit()

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # an extra test set (test_sets=[...]) is reported under its own prefix, e.g. cifar10_1/
        self._collect(trainer, getattr(pl_module, "test_prefix", "test/"))
        self._write()
        if self.print_table:
            self._print()

    def record(self, key: str, value: float | None) -> None:
        """Add a metric computed outside the loops (e.g. ``tune/lr_suggestion``) and write the file."""
        self.metrics[key] = None if value is None else _as_float(value)
        self._write()

    def record_many(self, metrics: dict[str, float | None]) -> None:
        """:meth:`record` for several metrics at once (e.g. the corruption pass's ``corruptions/*``), one write."""
        self.metrics.update({key: None if value is None else _as_float(value) for key, value in metrics.items()})
        self._write()

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
