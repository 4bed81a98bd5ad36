"""Per-group metrics of validation and test (``groups=PATH``): worst-group accuracy, exact under DDP.

The group file (:mod:`litvision.datamodules.readers.group_file`) names each sample's group(s);
the DataModule's val/test batches then carry the group codes (``attach_groups``), and this
callback counts hits per (group, class) from the classifier's logits
(:class:`~litvision.lightning_modules.metrics.groups.GroupCounts`, summed across ranks). It logs
``val/worst_group_acc`` (so ``callbacks.model_checkpoint.monitor=val/worst_group_acc`` selects
checkpoints by it), ``test/worst_group_acc``, the gap to the overall top-1, their bootstrap 95%
intervals, and every group's top-1, balanced accuracy and per-class recall
(:func:`~litvision.lightning_modules.metrics.groups.group_summary`). A group of the file with no
image in a split is reported absent (``n`` = 0, accuracies null), not 0. When the worst group is
``warn_gap`` or more below the overall top-1, it warns: the accuracy paradox, by group.
"""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
import torch

from litvision.datamodules.readers.group_file import GroupTable, read_group_file
from litvision.lightning_modules.metrics.groups import GroupCounts, group_summary, worst_group_name
from litvision.utils.errors import ConfigError

log = logging.getLogger("litvision")


class GroupMetrics(L.Callback):
    """Args:
    path: the group file (``groups=PATH``); None: the callback does nothing.
    warn_gap: warn when overall top-1 minus the worst group's top-1 is at least this.
    bootstrap: bootstrap draws for the 95% intervals (0: no intervals).
    seed: seed of the bootstrap (the same intervals on every rank and every run).
    """

    def __init__(self, path: str | None = None, warn_gap: float = 0.1, bootstrap: int = 1000, seed: int = 0) -> None:
        self.path = path or None
        self.warn_gap = warn_gap
        self.bootstrap = int(bootstrap)
        self.seed = seed
        self.table: GroupTable | None = read_group_file(self.path) if self.path else None  # refused at construction
        self.counts: GroupCounts | None = None
        self.results: dict[str, dict[str, float]] = {}  # split prefix -> the last flat metrics

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.table is None:
            return
        datamodule = trainer.datamodule  # type: ignore[attr-defined]  # Lightning sets it; Trainer does not declare it
        if not hasattr(datamodule, "attach_groups"):
            raise ConfigError(
                f"groups={self.path}: {type(datamodule).__name__} does not carry sample ids into its batches; per-group "
                "metrics need a map-style dataset (dataset=cifar10, class_folder, imagenet, or a shifted test set)"
            )
        if stage == "predict":
            return
        datamodule.setup(stage)  # (already done by Lightning; returns at once) the splits exist
        covered = datamodule.attach_groups(self.table.codes_for)
        for split, n in covered.items():
            size = len(getattr(datamodule.splits, split))
            if n < size:
                log.warning(
                    "groups=%s: %d of the %d %s images have no group in the file", self.path, size - n, size, split
                )

    def _start(self, pl_module: L.LightningModule) -> None:
        # a module may opt out (the corruption pass, lightning_modules/variant_evaluator.py: no group codes)
        if self.table is not None and getattr(pl_module, "per_group_metrics", True):
            class_names: list[str] = list(pl_module.class_names)  # type: ignore[arg-type]  # ImageClassifier's list
            self.counts = GroupCounts(self.table.num_groups, len(class_names)).to(pl_module.device)

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start(pl_module)

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start(pl_module)

    def _update(self, outputs: Any, batch: Any) -> None:
        if self.counts is None or outputs is None or len(batch) < 3:
            return
        self.counts.update(outputs.argmax(dim=1), batch[1], batch[2])

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._update(outputs, batch)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._update(outputs, batch)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._finish(trainer, pl_module, "val/")

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._finish(trainer, pl_module, getattr(pl_module, "test_prefix", "test/"))

    def _finish(self, trainer: L.Trainer, pl_module: L.LightningModule, prefix: str) -> None:
        if self.counts is None or self.table is None:
            return
        counts = self.counts.compute()  # summed across ranks
        class_names: list[str] = list(pl_module.class_names)  # type: ignore[arg-type]  # ImageClassifier's list
        flat = group_summary(
            counts, prefix, self.table.columns, self.table.names, class_names, self.bootstrap, self.seed
        )
        self.counts = None
        self.results[prefix] = flat
        self._log(trainer, pl_module, flat)
        self._warn(counts, flat, prefix, trainer)

    @staticmethod
    def _log(trainer: L.Trainer, pl_module: L.LightningModule, flat: dict[str, float]) -> None:
        """The headline figures (worst group, gap, intervals) through ``log_dict`` (progress bar, checkpoint
        monitor, per-epoch logger rows); the per-group ones (dozens to thousands: per class) straight into
        ``callback_metrics`` (metrics.json) and the loggers: Lightning's ``log`` costs ~4 ms a key, which
        for 12 groups x 10 classes was 8% of a CIFAR validation epoch (bench/group_overhead.py)."""
        headline = {key: torch.tensor(value) for key, value in flat.items() if "/group/" not in key}
        pl_module.log_dict(headline, sync_dist=False)  # the same on every rank: computed from synced counts
        groups = {key: value for key, value in flat.items() if "/group/" in key}
        trainer.callback_metrics.update({key: torch.tensor(value) for key, value in groups.items()})
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.log_metrics(groups, step=trainer.global_step)

    def _warn(self, counts: dict[str, torch.Tensor], flat: dict[str, float], prefix: str, trainer: L.Trainer) -> None:
        n, k = int(counts["all_support"].sum()), int(counts["all_correct"].sum())
        worst = flat.get(f"{prefix}worst_group_acc", float("nan"))
        if not trainer.is_global_zero or not n or worst != worst:
            return
        overall = k / n
        name = worst_group_name(flat, prefix)
        message = "%s worst group %s: top-1 %.3f (95%% CI %.3f-%.3f) vs %.3f overall"
        args: tuple[Any, ...] = (
            prefix.rstrip("/"),
            name,
            worst,
            flat.get(f"{prefix}worst_group_acc_ci_low", float("nan")),
        )
        args += (flat.get(f"{prefix}worst_group_acc_ci_high", float("nan")), overall)
        if overall - worst >= self.warn_gap:
            log.warning(
                "ACCURACY PARADOX BY GROUP: "
                + message
                + ", %.3f below: report per-group accuracy (%sgroup/*), not top-1 alone",
                *args,
                overall - worst,
                prefix,
            )
        else:
            log.info(message, *args)
