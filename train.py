"""Train an image classifier: ``python train.py [group=option ...] [key=value ...]``.

Hydra composes the run from ``conf/train.yaml``; every object is built by
``hydra.utils.instantiate`` from its ``_target_``. The run fits, tests the best
checkpoint and writes ``<run dir>/metrics.json``.

Scale-out (see README "Multi-GPU, clusters, sweeps, resume"): ``trainer=ddp|ddp_sim|multinode``,
``-m`` sweeps (one W&B run per job, grouped by sweep; ``<sweep dir>/summary.md``),
``hparams_search=cifar10_optuna``, ``hydra/launcher=slurm|local`` and ``ckpt_path=last``.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no network check on import

import hydra
import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from callbacks.distributed import (
    global_rank,
    ignore_sync_dist_advice,
    isolated_ddp_job,
    quiet_non_zero_ranks,
    use_hydra_job_command_for_ddp,
)
from callbacks.metrics_summary import MetricsSummary
from callbacks.sweep_summary import metric_direction, worst_value
from callbacks.wandb_logger import finish_wandb
from callbacks.wandb_resume import assign_wandb_run_id
from lightning_modules.resolvers import register_resolvers

register_resolvers()  # ${lv.mul:...} etc. in conf/ (before Hydra resolves anything)

log = logging.getLogger("litvision")


def instantiate_group(group: DictConfig | None) -> list[Any]:
    """Instantiate every ``_target_`` entry of a callbacks/logger group (mapping of name -> cfg)."""
    if not group:
        return []
    if not isinstance(group, DictConfig):
        raise TypeError(f"expected a mapping of name -> config, got {type(group).__name__}")
    return [instantiate(node) for node in group.values() if isinstance(node, DictConfig) and "_target_" in node]


def build_callbacks(cfg: DictConfig, has_logger: bool) -> list[L.Callback]:
    callbacks = instantiate_group(cfg.get("callbacks"))
    if not has_logger:
        # LearningRateMonitor refuses to run without a logger; metrics.json still gets everything.
        callbacks = [cb for cb in callbacks if not isinstance(cb, L.pytorch.callbacks.LearningRateMonitor)]
    if not any(isinstance(cb, MetricsSummary) for cb in callbacks):
        callbacks.append(MetricsSummary(Path(cfg.paths.output_dir) / "metrics.json"))
    return callbacks


def log_config(cfg: DictConfig, loggers: list[Any]) -> None:
    """Send the resolved config to every logger, so a run records exactly what it ran."""
    config = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    for logger in loggers:
        logger.log_hyperparams(config)


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


def setup_run(cfg: DictConfig, model: L.LightningModule | None = None):
    """Instantiate datamodule, model (unless given, e.g. from a checkpoint), loggers, callbacks
    and trainer from the config."""
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate(cfg.dataset)
    if model is None:
        model = instantiate(cfg.model)
    loggers = instantiate_group(cfg.get("logger"))
    callbacks = build_callbacks(cfg, has_logger=bool(loggers))
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    log_config(cfg, loggers)
    return datamodule, model, trainer


def metrics_of(trainer: L.Trainer) -> dict[str, Any]:
    for callback in trainer.callbacks:
        if isinstance(callback, MetricsSummary):
            return dict(callback.metrics)
    return {}


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


def optimized_value(metrics: dict[str, Any], name: str | None, direction: str = "maximize") -> float | None:
    """The value a sweeper optimises.

    A diverged run (NaN/inf metric) reports the worst value for ``direction`` (-inf when
    maximising) instead of NaN: Optuna turns a NaN into an exception that stops the whole
    study, while a very bad value is simply a bad trial.
    """
    if not name:
        return None
    if name not in metrics:
        raise KeyError(f"optimized_metric={name!r} not among the final metrics: {sorted(metrics)}")
    value = metrics[name]
    if value is None or not math.isfinite(value):
        log.warning("optimized_metric %s is %s (diverged run): reporting %s to the sweeper", name, value, worst_value(direction))
        return worst_value(direction)
    return float(value)


def hydra_settings() -> DictConfig | None:
    """The ``hydra`` node of this job, or None when train() is called without @hydra.main."""
    return HydraConfig.get() if HydraConfig.initialized() else None


def apply_sweep_group(cfg: DictConfig, hydra_cfg: DictConfig | None) -> None:
    """In a multirun, every job's W&B run joins the group named after the sweep dir."""
    wandb_cfg = (cfg.get("logger") or {}).get("wandb")
    if hydra_cfg is None or hydra_cfg.mode != RunMode.MULTIRUN or not isinstance(wandb_cfg, DictConfig):
        return
    if wandb_cfg.get("group") is None:
        with open_dict(wandb_cfg):
            wandb_cfg.group = Path(hydra_cfg.sweep.dir).name


@contextmanager
def managed_job(script: str) -> Iterator[None]:
    """Process set-up and tear-down shared by train.py and eval.py jobs (also inside sweeps)."""
    # DDP child ranks must re-run this job, not the command line (which may be a whole sweep)
    use_hydra_job_command_for_ddp(script)
    quiet_non_zero_ranks()
    ignore_sync_dist_advice()
    try:
        with isolated_ddp_job():  # the next job of a sweep starts a fresh process group
            yield
    except BaseException:
        finish_wandb(exit_code=1)  # the W&B run is marked failed; the sweep summary marks the job FAILED
        raise
    finish_wandb()


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    hydra_cfg = hydra_settings()
    apply_sweep_group(cfg, hydra_cfg)
    with managed_job(__file__):
        metrics = train(cfg)
    name = cfg.get("optimized_metric")
    return optimized_value(metrics, name, metric_direction(name, hydra_cfg))


if __name__ == "__main__":
    main()
