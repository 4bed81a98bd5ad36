"""Build a run's objects from its config: every one by ``hydra.utils.instantiate`` from a ``_target_``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from litvision.callbacks.metrics_summary import MetricsSummary

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
    """The final metrics the run's :class:`MetricsSummary` collected (also in metrics.json)."""
    for callback in trainer.callbacks:
        if isinstance(callback, MetricsSummary):
            return dict(callback.metrics)
    return {}
