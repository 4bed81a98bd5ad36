"""The prediction task: per-sample predictions of a checkpoint for a dataset split or a folder of images."""

from __future__ import annotations

from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig

from litvision.callbacks.prediction_writer import PredictionWriter
from litvision.lightning_modules.checkpoints import load_classifier
from litvision.lightning_modules.predictor import ProbabilityPredictor
from litvision.tasks.build import checkpoint_trust, instantiate_group, log_config
from litvision.utils.errors import ConfigError


def predict(cfg: DictConfig) -> dict[str, Any]:
    """Write ``predictions.csv``, ``probabilities.npy`` and ``predictions.json`` into the run dir
    (``callbacks.prediction_writer.output_dir``); return the summary (paths, counts) on rank zero.

    Config keys: ``ckpt_path``, ``split`` (train|val|test|source_<name>) or ``images`` (a folder),
    ``predict_data`` (the :class:`~litvision.datamodules.prediction.PredictionDataModule` node),
    ``dataset``, ``trainer``, ``callbacks``, ``logger``, ``trust_checkpoint``/``trust_checkpoint_targets``
    (conf/predict.yaml).
    """
    classifier = load_classifier(cfg.ckpt_path, map_location="cpu", **checkpoint_trust(cfg))  # weights_only=True
    images = cfg.get("images")
    source = None if images else instantiate(cfg.dataset)
    data = instantiate(cfg.predict_data, source=source)
    loggers = instantiate_group(cfg.get("logger"))
    callbacks = instantiate_group(cfg.get("callbacks"))
    writers = [cb for cb in callbacks if isinstance(cb, PredictionWriter)]
    if len(writers) != 1:
        raise ConfigError(
            f"{len(writers)} PredictionWriter callbacks configured; predict needs exactly one (callbacks=predict)"
        )
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    log_config(cfg, loggers)
    trainer.predict(ProbabilityPredictor(classifier), datamodule=data, return_predictions=False)
    return writers[0].summary
