"""Build a run's objects from its config: every one by ``hydra.utils.instantiate`` from a ``_target_``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

from litvision.callbacks.metrics_summary import MetricsSummary
from litvision.lightning_modules.resume_check import check_resume_config
from litvision.tasks.seed import seed_run
from litvision.utils.checkpoint_io import load_checkpoint
from litvision.utils.errors import ConfigError

log = logging.getLogger("litvision")


def instantiate_group(group: DictConfig | None) -> list[Any]:
    """Instantiate every ``_target_`` entry of a callbacks/logger group (mapping of name -> cfg)."""
    if not group:
        return []
    if not isinstance(group, DictConfig):
        raise TypeError(f"expected a mapping of name -> config, got {type(group).__name__}")
    return [instantiate(node) for node in group.values() if isinstance(node, DictConfig) and "_target_" in node]


def build_callbacks(cfg: DictConfig) -> list[L.Callback]:
    callbacks = instantiate_group(cfg.get("callbacks"))
    if not any(isinstance(cb, MetricsSummary) for cb in callbacks):
        callbacks.append(MetricsSummary(Path(cfg.paths.output_dir) / "metrics.json"))
    return callbacks


def find_last_checkpoint(callbacks: list[L.Callback]) -> str | None:
    """The checkpoint ``trainer.fit(ckpt_path="last")`` resumes from, or None.

    Lightning's own rule (checked in 2.6, ``_CheckpointConnector._parse_ckpt_path``): the
    newest ``last*.ckpt`` in the ``dirpath`` of any ModelCheckpoint. Fitting passes "last" to
    Lightning; this answer is only needed before the Trainer exists (to continue the W&B
    run) and for ``train=false ckpt_path=last``.
    """
    found = [
        path
        for cb in callbacks
        if isinstance(cb, ModelCheckpoint) and cb.dirpath
        for path in Path(cb.dirpath).glob(f"{cb.CHECKPOINT_NAME_LAST}*{cb.FILE_EXTENSION}")
    ]
    return str(max(found, key=lambda path: path.stat().st_mtime)) if found else None


def checkpoint_trust(cfg: DictConfig) -> dict[str, Any]:
    """The ``trust_checkpoint``/``trust_checkpoint_targets`` keys as keyword arguments of ``load_classifier``."""
    targets = cfg.get("trust_checkpoint_targets") or []
    return {
        "trust_checkpoint": cfg.get("trust_checkpoint", False),
        "trust_checkpoint_targets": [targets] if isinstance(targets, str) else list(targets),
    }


def check_accelerator(trainer_cfg: DictConfig) -> None:
    """``trainer=gpu`` on a machine without one: say what to use instead (before any data is read)."""
    accelerator = str(trainer_cfg.get("accelerator", "auto"))
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available() and not torch.backends.mps.is_available():
        raise ConfigError(
            f"trainer.accelerator={accelerator} but this machine has no usable GPU: use trainer=cpu "
            "(or trainer=ddp_sim to run the DDP code paths on CPU)"
        )


def log_config(cfg: DictConfig, loggers: list[Any]) -> None:
    """Send the resolved config to every logger, so a run records exactly what it ran."""
    config = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    for logger in loggers:
        logger.log_hyperparams(config)


def setup_run(
    cfg: DictConfig,
    model: L.LightningModule | None = None,
    callbacks: list[L.Callback] | None = None,
    resume_from: str | None = None,
):
    """Instantiate datamodule, model (unless given, e.g. from a checkpoint), loggers, callbacks
    (unless given) and trainer from the config. Every check of the config runs here, before
    any data is read; ``resume_from`` (the checkpoint a fit will resume) is checked against the
    model and trainer before the loggers start (a refused resume touches no W&B run)."""
    seed_run(cfg, saved_config=saved_config_path())
    check_accelerator(cfg.trainer)
    datamodule = instantiate(cfg.dataset)
    if model is None:
        model = instantiate(cfg.model)
    loggers = instantiate_group(cfg.get("logger"))
    callbacks = build_callbacks(cfg) if callbacks is None else callbacks
    if not loggers:
        # LearningRateMonitor refuses to run without a logger; metrics.json still gets everything.
        callbacks = [cb for cb in callbacks if not isinstance(cb, L.pytorch.callbacks.LearningRateMonitor)]
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    if resume_from is not None:
        check_resume_config(resume_from, load_checkpoint(resume_from), model.hparams, trainer)
    log_config(cfg, loggers)
    return datamodule, model, trainer


def saved_config_path() -> Path | None:
    """``<run dir>/.hydra/config.yaml`` as Hydra wrote it for this job (None outside Hydra)."""
    if not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    if not hydra_cfg.output_subdir:
        return None
    return Path(hydra_cfg.runtime.output_dir) / hydra_cfg.output_subdir / "config.yaml"


def metrics_of(trainer: L.Trainer) -> dict[str, Any]:
    """The final metrics the run's :class:`MetricsSummary` collected (also in metrics.json)."""
    for callback in trainer.callbacks:
        if isinstance(callback, MetricsSummary):
            return dict(callback.metrics)
    return {}
