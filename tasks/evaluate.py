"""The evaluation task: test a checkpoint on a dataset's test split."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from litvision.lightning_modules.checkpoints import load_classifier
from litvision.tasks.build import build_run, checkpoint_trust, metrics_of
from litvision.tasks.preprocessing import checkpoint_data_overrides
from litvision.tasks.robustness import corruption_plan, run_corruptions
from litvision.tasks.test_sets import build_test_sets, run_test_sets


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """``eval.py ckpt_path=X``: the model (architecture, classes, weights) comes from X."""
    return test_checkpoint(cfg, cfg.ckpt_path)


def test_checkpoint(cfg: DictConfig, ckpt_path: str, callbacks: list[Any] | None = None) -> dict[str, Any]:
    """Test the classifier stored in ``ckpt_path`` (loaded with weights_only=True) on cfg's dataset.

    Shared by ``eval.py`` and ``train.py train=false ckpt_path=X``, so both report the same
    numbers; ``robustness=corruptions`` adds the corruption pass (:mod:`litvision.tasks.robustness`).
    A dataset whose classes differ from the checkpoint's is refused, and so is a checkpoint naming
    targets litvision does not build from a file (``trust_checkpoint*`` keys).
    """
    model = load_classifier(ckpt_path, map_location="cpu", **checkpoint_trust(cfg))
    # the eval preprocessing the checkpoint was trained with, unless augmentation=... is on the command line
    overrides = checkpoint_data_overrides(cfg, model, ckpt_path)
    run = build_run(cfg, model=model, callbacks=callbacks, data_overrides=overrides)
    test_sets = build_test_sets(run.cfg, overrides)  # test_sets=[...], with the same preprocessing
    corruptions = corruption_plan(run.cfg, len(model.class_names))  # robustness=corruptions, checked first
    if corruptions is not None:  # before the plain test: its robustness report then shows robustness.json
        run_corruptions(run.trainer, run.model, run.datamodule, corruptions)
    run.trainer.test(run.model, datamodule=run.datamodule, verbose=False)
    run_test_sets(run.trainer, run.model, test_sets)
    return metrics_of(run.trainer)
