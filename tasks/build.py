"""Build a run once: settle its config, then instantiate every object from it.

One place completes what the composed config leaves open (:func:`settle_config`: the seed, a
sweep's W&B group, the W&B run id of a resumed run) and makes it read-only; :func:`build_run`
then instantiates the DataModule, the model, the loggers, the callbacks and the Trainer, each by
``hydra.utils.instantiate`` from its ``_target_``. Nothing edits the config after that, and
nothing is built twice. Which checkpoint ``ckpt_path=last`` resumes is asked of the run's own
ModelCheckpoint callbacks (:func:`last_checkpoint`); the fit itself is handed ``"last"``.
"""

from __future__ import annotations

import copy
import logging
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, OmegaConf, open_dict

from litvision.callbacks.metrics_summary import MetricsSummary
from litvision.lightning_modules.classifier import building_from_checkpoint
from litvision.lightning_modules.resume_check import check_resume_config
from litvision.loggers.wandb_run_id import wandb_run_id
from litvision.tasks.preprocessing import apply_weights_preprocessing
from litvision.tasks.seed import settled_seed
from litvision.utils.checkpoint_io import load_checkpoint
from litvision.utils.distributed import global_rank
from litvision.utils.errors import ConfigError

log = logging.getLogger("litvision")


@dataclass(frozen=True)
class Run:
    """The objects of one run, built from one settled, read-only config."""

    cfg: DictConfig
    datamodule: L.LightningDataModule
    model: L.LightningModule
    trainer: L.Trainer


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


def last_checkpoint(callbacks: list[L.Callback]) -> str | None:
    """The file ``trainer.fit(ckpt_path="last")`` resumes, by Lightning's own rule, or None.

    Each ModelCheckpoint lists its own ``last*.ckpt`` (``_find_last_checkpoints``, the method
    Lightning's ``_CheckpointConnector._parse_ckpt_path`` calls) and the newest wins, as there.
    Asked before the Trainer exists: the W&B run id and the resume checks must be settled
    before anything is logged or restored; the fit itself is still given ``"last"``.
    """
    modified: dict[str, Any] = {}
    for callback in callbacks:
        if isinstance(callback, ModelCheckpoint) and callback.dirpath is not None:  # no trainer needed then
            for path in callback._find_last_checkpoints(None):  # type: ignore[arg-type]
                if callback._fs.exists(path):
                    modified[path] = callback._fs.modified(path)
    return max(modified, key=modified.__getitem__) if modified else None


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


def settle_config(cfg: DictConfig, resuming: bool | None = None, resume_from: str | None = None) -> DictConfig:
    """The run's config, complete and read-only: the one place anything is filled in.

    * ``seed``: a null seed is drawn (or inherited from rank 0), recorded in ``.hydra/config.yaml``,
      and everything is seeded with it;
    * ``logger.wandb.group``: in a multirun, every job's W&B run joins the group named after the
      sweep dir (unless set);
    * ``logger.wandb.id``: for a training run (``resuming`` not None), the run dir's stored id when
      resuming, else a new one (stored): a resumed run continues its W&B run;
    * ``weights_preprocessing``: for a training run, the preprocessing ``model.backbone.weights``
      carries, which the augmentation options default to (:mod:`litvision.tasks.preprocessing`;
      ``resume_from``: its checkpoint's record when the weight file is gone).

    The caller's ``cfg`` is left as Hydra composed it; the returned copy cannot be edited.
    """
    cfg = copy.deepcopy(cfg)
    with open_dict(cfg):
        cfg.seed = settled_seed(cfg.get("seed"), saved_config_path())
        wandb = (cfg.get("logger") or {}).get("wandb")
        if isinstance(wandb, DictConfig) and "_target_" in wandb:
            group = sweep_group()
            if group is not None and wandb.get("group") is None:
                wandb.group = group
            if resuming is not None:
                wandb.id = wandb_run_id(wandb.get("id"), cfg.paths.output_dir, resuming, global_rank() == 0)
                wandb.resume = "allow"
        if resuming is not None:
            apply_weights_preprocessing(cfg, resume_from)
    OmegaConf.set_readonly(cfg, True)
    L.seed_everything(cfg.seed, workers=True)
    return cfg


def build_run(
    cfg: DictConfig,
    *,
    model: L.LightningModule | None = None,
    datamodule: L.LightningDataModule | None = None,
    callbacks: list[L.Callback] | None = None,
    resume_from: str | None = None,
    resuming: bool | None = None,
    data_overrides: dict[str, Any] | None = None,
) -> Run:
    """Settle ``cfg`` and instantiate the run: the DataModule (unless given, e.g. predict's), the model
    (unless given, e.g. from a checkpoint), loggers, callbacks (unless given: train.py builds them
    first to find its last checkpoint) and the Trainer. Every check of the config runs here, before
    any data is read; ``resume_from`` (the checkpoint a fit will resume) is checked against the model
    and trainer before the loggers start (a refused resume touches no W&B run). ``resuming``: see
    :func:`settle_config` (None for runs that do not train). ``data_overrides``: DataModule arguments
    that replace the config's (a checkpoint's eval preprocessing, :mod:`litvision.tasks.preprocessing`)."""
    cfg = settle_config(cfg, resuming=resuming, resume_from=resume_from)
    check_accelerator(cfg.trainer)
    # Hydra's instantiate resolves the node it is given in place: build from a writable twin
    source = copy.deepcopy(cfg)
    OmegaConf.set_readonly(source, False)
    datamodule = instantiate(source.dataset, **(data_overrides or {})) if datamodule is None else datamodule
    if model is None:
        # a resume takes every weight from its checkpoint: model.backbone.weights is not loaded
        with building_from_checkpoint() if resume_from is not None else nullcontext():
            model = instantiate(source.model)
    loggers = instantiate_group(source.get("logger"))
    callbacks = build_callbacks(source) if callbacks is None else callbacks
    if not loggers:
        # LearningRateMonitor refuses to run without a logger; metrics.json still gets everything.
        callbacks = [cb for cb in callbacks if not isinstance(cb, L.pytorch.callbacks.LearningRateMonitor)]
    trainer = instantiate(source.trainer, callbacks=callbacks, logger=loggers or False)
    if resume_from is not None:
        check_resume_config(resume_from, load_checkpoint(resume_from), model.hparams, trainer)
    log_config(cfg, loggers)
    return Run(cfg=cfg, datamodule=datamodule, model=model, trainer=trainer)


def sweep_group() -> str | None:
    """The sweep dir's name in a multirun (every job's W&B run joins that group), else None."""
    if not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    return Path(hydra_cfg.sweep.dir).name if hydra_cfg.mode == RunMode.MULTIRUN else None


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
    for callback in trainer.callbacks:  # type: ignore[attr-defined]  # Lightning sets it; Trainer does not declare it
        if isinstance(callback, MetricsSummary):
            return dict(callback.metrics)
    return {}
