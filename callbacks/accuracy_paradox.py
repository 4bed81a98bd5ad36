"""At test end: warn when a good top-1 hides a class left behind; name the worst classes and confusions."""

from __future__ import annotations

import logging
import math
from typing import Any, cast

import lightning as L
import torch
from lightning.pytorch.loggers import WandbLogger

from litvision.lightning_modules.metrics.collections import unique_metric_names

log = logging.getLogger(__name__)


def paradox_report(
    confmat: torch.Tensor,
    class_names: list[str],
    min_top1: float,
    recall_gap: float,
    num_worst: int,
    num_pairs: int,
    prefix: str = "test/",
) -> tuple[dict[str, float], list[tuple[str, int, float]], list[tuple[str, str, int, float]]]:
    """(scalars for metrics.json/W&B, worst classes, most-confused pairs) from a confusion matrix.

    Rows = true class, columns = predicted class. Only classes with images in the split count.
    The warning rule: top-1 >= ``min_top1`` and some class has recall <= top-1 - ``recall_gap``.
    A pair's rate is the share of the true class's images predicted as the other class (a
    collapsed rare class shows up as a high rate even when it costs few images); ties by count.
    """
    confmat = confmat.long().cpu()
    names = unique_metric_names(class_names)
    support = confmat.sum(dim=1)
    total = int(support.sum())
    top1 = float(confmat.diag().sum()) / total if total else math.nan
    present = [c for c in range(len(names)) if support[c] > 0]
    recall = {c: float(confmat[c, c]) / float(support[c]) for c in present}
    threshold = top1 - recall_gap
    below = [c for c in present if recall[c] <= threshold]
    warn = bool(present) and top1 >= min_top1 and bool(below)
    worst = sorted(present, key=lambda c: (recall[c], -int(support[c])))[:num_worst]
    pairs = [
        (t, p, int(confmat[t, p]), float(confmat[t, p]) / float(support[t]))
        for t in present
        for p in range(len(names))
        if p != t and confmat[t, p] > 0
    ]
    pairs.sort(key=lambda pair: (-pair[3], -pair[2], pair[0], pair[1]))
    pairs = pairs[:num_pairs]

    scalars = {
        f"{prefix}paradox/warning": float(warn),
        f"{prefix}paradox/classes_below": float(len(below)),
        f"{prefix}paradox/recall_gap": top1 - min(recall.values()) if recall else math.nan,
    }
    for c in worst:
        scalars[f"{prefix}worst_recall/{names[c]}"] = recall[c]
    for t, p, _, rate in pairs:
        scalars[f"{prefix}confused/{names[t]}->{names[p]}"] = rate
    worst_rows = [(names[c], int(support[c]), recall[c]) for c in worst]
    pair_rows = [(names[t], names[p], count, rate) for t, p, count, rate in pairs]
    return scalars, worst_rows, pair_rows


class AccuracyParadoxReport(L.Callback):
    """Expose the accuracy paradox at test end (log, W&B, ``metrics.json``).

    Rule: **warn when** ``test/acc_top1 >= min_top1`` **and** some class present in the test
    split has ``recall <= test/acc_top1 - recall_gap`` (defaults 0.5 and 0.3: a model at 85%
    top-1 with a class at 55% or below). Keys added to ``metrics.json`` and W&B:

    - ``test/paradox/warning`` (1.0 or 0.0), ``test/paradox/classes_below`` (how many classes
      are at or below the threshold), ``test/paradox/recall_gap`` (top-1 minus the worst recall);
    - ``test/worst_recall/<class>`` for the ``num_worst_classes`` lowest recalls;
    - ``test/confused/<true>-><pred>``: share of ``<true>``'s test images predicted as
      ``<pred>``, for the ``num_confused_pairs`` largest shares;
    - W&B tables ``test/worst_classes`` and ``test/confused_pairs``.

    Reads the confusion matrix the classifier computed for the epoch (``epoch_results``),
    synced across ranks, so nothing is recomputed. Must come before ``metrics_summary`` in
    the callbacks config: it adds its keys to ``trainer.callback_metrics``, which
    :class:`~litvision.callbacks.metrics_summary.MetricsSummary` writes at the same hook.
    """

    def __init__(
        self, min_top1: float = 0.5, recall_gap: float = 0.3, num_worst_classes: int = 5, num_confused_pairs: int = 5
    ) -> None:
        self.min_top1 = min_top1
        self.recall_gap = recall_gap
        self.num_worst_classes = num_worst_classes
        self.num_confused_pairs = num_confused_pairs
        self.report: dict[str, Any] = {}

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if getattr(pl_module, "test_prefix", "test/") != "test/":
            return  # an extra test set (test_sets=[...]): this report is of the main test split
        results = getattr(pl_module, "epoch_results", {}).get("test")
        if results is None:
            return
        scalars, worst, pairs = paradox_report(
            results["confmat"],
            # class_names: set by our LightningModules (nn.Module.__getattr__ types it Tensor | Module)
            list(cast("list[str]", pl_module.class_names)),
            self.min_top1,
            self.recall_gap,
            self.num_worst_classes,
            self.num_confused_pairs,
        )
        self.report = {"scalars": scalars, "worst_classes": worst, "confused_pairs": pairs}
        # every rank: the same numbers (the confusion matrix is synced), so metrics_of() agrees everywhere
        trainer.callback_metrics.update({key: torch.tensor(value) for key, value in scalars.items()})
        if not trainer.is_global_zero:
            return
        worst_text = ", ".join(f"{name} {recall:.2f}" for name, _, recall in worst)
        pairs_text = ", ".join(f"{t}->{p} {rate:.2f} ({count})" for t, p, count, rate in pairs)
        if scalars["test/paradox/warning"]:
            top1 = float(results["confmat"].diag().sum()) / max(1.0, float(results["confmat"].sum()))
            log.warning(
                "ACCURACY PARADOX: test top-1 is %.3f but %d class(es) have recall <= %.3f (top-1 - %s); worst: %s. "
                "Report balanced accuracy (test/balanced_acc) and per-class recall, not top-1 alone. "
                "Most confused: %s",
                top1,
                int(scalars["test/paradox/classes_below"]),
                top1 - self.recall_gap,
                self.recall_gap,
                worst_text,
                pairs_text,
            )
        else:
            log.info("test: worst classes by recall: %s; most confused: %s", worst_text, pairs_text or "none")
        for logger in trainer.loggers:
            logger.log_metrics(scalars, step=trainer.global_step)
        self._log_tables(trainer, worst, pairs)

    def _log_tables(self, trainer: L.Trainer, worst: list, pairs: list) -> None:
        loggers = [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]
        if not loggers:
            return
        import wandb

        payload = {
            "test/worst_classes": wandb.Table(columns=["class", "support", "recall"], data=[list(r) for r in worst]),
            "test/confused_pairs": wandb.Table(
                columns=["true", "predicted", "count", "share of true class"], data=[list(r) for r in pairs]
            ),
        }
        for logger in loggers:
            logger.experiment.log({**payload, "trainer/global_step": trainer.global_step})
