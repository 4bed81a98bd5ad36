"""The training task: fit, then test the best checkpoint; returns the final metrics."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from litvision.tasks.build import build_callbacks, build_run, last_checkpoint, metrics_of
from litvision.tasks.evaluate import test_checkpoint
from litvision.tasks.preprocessing import record_run_preprocessing
from litvision.tasks.test_sets import build_test_sets, run_test_sets
from litvision.tasks.tune import find_lr, tune_options
from litvision.utils.errors import ConfigError, MissingDataError

log = logging.getLogger("litvision")


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit, test the best checkpoint, return the final metrics (also in metrics.json).

    ``ckpt_path``: a checkpoint to resume from, or ``last`` (Lightning's own resolution: the
    newest last checkpoint in the ModelCheckpoint's dirpath; a fresh start when there is
    none, so it is safe to pass always). With ``train=false`` the given checkpoint is tested,
    exactly as ``eval.py ckpt_path=...`` would.
    """
    ckpt_path = cfg.get("ckpt_path") or None
    if ckpt_path not in (None, "last") and not Path(ckpt_path).is_file():
        raise MissingDataError(f"ckpt_path={ckpt_path} does not exist (pass a .ckpt file, or ckpt_path=last)")
    callbacks = build_callbacks(cfg)  # once: they also say which checkpoint ckpt_path=last is
    resume_from = last_checkpoint(callbacks) if ckpt_path == "last" else ckpt_path
    if not cfg.get("train", True):
        return test_only(cfg, resume_from, callbacks)
    if resume_from:
        log.info("resuming from %s", resume_from)
    elif ckpt_path == "last":
        log.info("ckpt_path=last: no last checkpoint yet, starting from scratch")
    run = build_run(cfg, callbacks=callbacks, resume_from=resume_from, resuming=resume_from is not None)
    record_run_preprocessing(run.model, run.datamodule, run.cfg)  # in every checkpoint: eval.py/predict.py apply it
    test_sets = build_test_sets(run.cfg) if run.cfg.get("test", True) else {}  # checked before fitting
    if resume_from is None:
        find_lr(run.cfg, run.trainer, run.model, run.datamodule)  # tune=lr_find (tasks/tune.py)
    elif tune_options(run.cfg) is not None:
        log.info("tune=lr_find: skipped when resuming (the run goes on with the checkpoint's optimizer state)")
    # ckpt_path="last" is resolved by Lightning (it asks the checkpoint callbacks); every
    # checkpoint is read with weights_only=True (plugins/atomic_checkpoint.py)
    run.trainer.fit(run.model, datamodule=run.datamodule, ckpt_path=ckpt_path, weights_only=True)
    if run.cfg.get("test", True):
        # a ModelCheckpoint has a best_model_path; Checkpoint, the type Lightning declares, does not
        best = getattr(run.trainer.checkpoint_callback, "best_model_path", "")
        if not best:
            log.warning("no best checkpoint (checkpointing off or fast_dev_run): testing the current weights")
        run.trainer.test(run.model, datamodule=run.datamodule, ckpt_path=best or None, weights_only=True, verbose=False)
        run_test_sets(run.trainer, run.model, test_sets, ckpt_path=best or None)  # test_sets=[...]
    return metrics_of(run.trainer)


def test_only(cfg: DictConfig, ckpt_path: str | None, callbacks: list[Any]) -> dict[str, Any]:
    """``train=false``: test ``ckpt_path`` (as eval.py does); without one there is nothing to test."""
    if not cfg.get("test", True):
        return {}
    if ckpt_path is None:
        found = "no last checkpoint in this run's checkpoint folder" if cfg.get("ckpt_path") == "last" else "none given"
        raise ConfigError(f"train=false tests a checkpoint but there is {found}: pass ckpt_path=<file>.ckpt")
    log.info("train=false: testing %s", ckpt_path)
    return test_checkpoint(cfg, ckpt_path, callbacks=callbacks)
