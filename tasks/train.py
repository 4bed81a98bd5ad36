"""The training task: fit, then test the best checkpoint; returns the final metrics."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from litvision.launch.process import global_rank
from litvision.loggers.wandb_run_id import assign_wandb_run_id
from litvision.tasks.build import metrics_of, setup_run

log = logging.getLogger("litvision")


def resolve_ckpt_path(ckpt_path: str | None, output_dir: str) -> str | None:
    """``ckpt_path=last`` means this run dir's last checkpoint (resume after a kill)."""
    if ckpt_path in (None, "", "null"):
        return None
    if ckpt_path == "last":
        last = Path(output_dir) / "checkpoints" / "last.ckpt"
        return str(last) if last.exists() else None
    if not Path(ckpt_path).is_file():
        raise FileNotFoundError(f"ckpt_path={ckpt_path} does not exist")
    return ckpt_path


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit, test the best checkpoint, return the final metrics (also in metrics.json)."""
    ckpt_path = resolve_ckpt_path(cfg.get("ckpt_path"), cfg.paths.output_dir) if cfg.get("train", True) else None
    if ckpt_path:
        log.info("resuming from %s", ckpt_path)
    # before the logger exists: a resumed run continues its W&B run instead of starting one
    assign_wandb_run_id(cfg, resuming=ckpt_path is not None, is_rank_zero=global_rank() == 0)
    datamodule, model, trainer = setup_run(cfg)
    if cfg.get("train", True):
        # weights_only=False: our checkpoints hold the (trusted) hyperparameters, incl. factories.
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=False)
    if cfg.get("test", True):
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        if not best:
            log.warning("no best checkpoint (checkpointing off or fast_dev_run): testing the current weights")
        trainer.test(model, datamodule=datamodule, ckpt_path=best or None, weights_only=False, verbose=False)
    return metrics_of(trainer)
