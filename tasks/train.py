"""The training task: fit, then test the best checkpoint; returns the final metrics."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from litvision.loggers.wandb_run_id import assign_wandb_run_id
from litvision.tasks.build import build_callbacks, find_last_checkpoint, metrics_of, setup_run
from litvision.tasks.evaluate import test_checkpoint
from litvision.utils.distributed import global_rank
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
    callbacks = build_callbacks(cfg)
    last = find_last_checkpoint(callbacks) if ckpt_path == "last" else None
    if not cfg.get("train", True):
        return test_only(cfg, last if ckpt_path == "last" else ckpt_path)
    resume_from = last if ckpt_path == "last" else ckpt_path
    if resume_from:
        log.info("resuming from %s", resume_from)
    elif ckpt_path == "last":
        log.info("ckpt_path=last: no last checkpoint yet, starting from scratch")
    # before the logger exists: a resumed run continues its W&B run instead of starting one
    assign_wandb_run_id(cfg, resuming=resume_from is not None, is_rank_zero=global_rank() == 0)
    datamodule, model, trainer = setup_run(cfg, callbacks=callbacks, resume_from=resume_from)
    # ckpt_path="last" is resolved by Lightning (it asks the checkpoint callbacks); every
    # checkpoint is read with weights_only=True (plugins/atomic_checkpoint.py)
    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    if cfg.get("test", True):
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        if not best:
            log.warning("no best checkpoint (checkpointing off or fast_dev_run): testing the current weights")
        trainer.test(model, datamodule=datamodule, ckpt_path=best or None, weights_only=True, verbose=False)
    return metrics_of(trainer)


def test_only(cfg: DictConfig, ckpt_path: str | None) -> dict[str, Any]:
    """``train=false``: test ``ckpt_path`` (as eval.py does); without one there is nothing to test."""
    if not cfg.get("test", True):
        return {}
    if ckpt_path is None:
        found = "no last checkpoint in this run's checkpoint folder" if cfg.get("ckpt_path") == "last" else "none given"
        raise ConfigError(f"train=false tests a checkpoint but there is {found}: pass ckpt_path=<file>.ckpt")
    log.info("train=false: testing %s", ckpt_path)
    return test_checkpoint(cfg, ckpt_path)
