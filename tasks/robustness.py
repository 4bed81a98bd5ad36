"""``robustness=corruptions``: the test split under ImageNet-C's corruptions, in one pass before the plain test.

:func:`corruption_plan` reads ``cfg.robustness`` (corruptions, severities, seed, reference) and
refuses a bad one in one line before anything runs; :func:`run_corruptions` gives the
DataModule the test hook (clean + every corruption x severity, applied in the loader workers:
:mod:`litvision.datamodules.transforms.corruptions`), tests the classifier on all of them in one
``trainer.test`` (:class:`~litvision.lightning_modules.variant_evaluator.VariantEvaluator`: counts
summed across ranks, exact under DDP), then writes ``robustness.json``, the ``report.md`` section,
the heatmap and the metrics (:mod:`litvision.tasks.corruption_report`). It runs before the plain
test, so the robustness report written at that test's end (callbacks/robustness_report.py) has
``robustness.json`` to show.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
from omegaconf import DictConfig

from litvision.callbacks.metrics_summary import MetricsSummary
from litvision.datamodules.transforms.corruptions.hook import CorruptionHook
from litvision.lightning_modules.variant_evaluator import VariantEvaluator
from litvision.tasks.corruption_report import Reference, flat_metrics, log_wandb, summarise, write_outputs
from litvision.utils.distributed import global_rank
from litvision.utils.errors import ConfigError

log = logging.getLogger("litvision")

IMAGENET_CLASSES = 1000  # a 1,000-class model without robustness.reference is compared with AlexNet


@dataclass(frozen=True)
class CorruptionPlan:
    hook: CorruptionHook
    reference: Reference | None
    out_dir: Path


def corruption_plan(cfg: DictConfig, num_classes: int) -> CorruptionPlan | None:
    """The pass ``cfg.robustness`` asks for (None for ``robustness=none``), checked."""
    node = cfg.get("robustness")
    if not node or not node.get("corruptions"):
        return None
    unknown = sorted(set(node) - {"corruptions", "severities", "reference", "seed"})
    if unknown:
        raise ConfigError(f"robustness.{unknown[0]}: no such option (corruptions, severities, reference, seed)")
    hook = CorruptionHook(node.corruptions, node.get("severities", [1, 2, 3, 4, 5]), int(node.get("seed", 0) or 0))
    variants = hook.variants[1:]
    if node.get("reference"):
        reference: Reference | None = Reference.from_file(str(node.reference), variants)
    elif num_classes == IMAGENET_CLASSES:
        reference = Reference.alexnet()
    else:
        reference = None
    return CorruptionPlan(hook=hook, reference=reference, out_dir=Path(cfg.paths.output_dir))


def run_corruptions(trainer: L.Trainer, model: L.LightningModule, datamodule: Any, plan: CorruptionPlan) -> dict:
    """Test ``model`` on clean + every variant of ``plan`` in one pass; write the report (rank zero); the summary."""
    names = plan.hook.names()
    log.info("corruptions: %d variants x the test split, one pass (robustness=corruptions)", len(names))
    evaluator = VariantEvaluator(model, names)
    datamodule.set_test_hook(plan.hook)
    try:
        trainer.test(evaluator, datamodule=datamodule, verbose=False)
    finally:
        datamodule.set_test_hook(None)
    assert evaluator.results is not None
    summary = summarise(names, *evaluator.results, plan.reference, plan.hook.seed)
    if global_rank() == 0:
        write_outputs(summary, plan.out_dir)
        log_wandb(trainer, summary, plan.out_dir)
    for callback in trainer.callbacks:  # type: ignore[attr-defined]  # Lightning sets it
        if isinstance(callback, MetricsSummary):
            callback.record_many(flat_metrics(summary))
    return summary
