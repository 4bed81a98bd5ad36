"""The prediction task: per-sample predictions of a checkpoint for a dataset split or a folder of images."""

from __future__ import annotations

from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig

from litvision.callbacks.prediction_writer import PredictionWriter
from litvision.lightning_modules.checkpoints import load_classifier
from litvision.lightning_modules.predictor import ProbabilityPredictor
from litvision.tasks.build import build_run, checkpoint_trust, instantiate_group
from litvision.tasks.preprocessing import checkpoint_data_overrides
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
    # the eval preprocessing the checkpoint was trained with, unless augmentation=... is on the command line
    data_overrides = checkpoint_data_overrides(cfg, classifier, cfg.ckpt_path)
    source = None if cfg.get("images") else instantiate(cfg.dataset, **data_overrides)
    callbacks = instantiate_group(cfg.get("callbacks"))
    writers = [cb for cb in callbacks if isinstance(cb, PredictionWriter)]
    if len(writers) != 1:
        raise ConfigError(
            f"{len(writers)} PredictionWriter callbacks configured; predict needs exactly one (callbacks=predict)"
        )
    run = build_run(
        cfg,
        model=ProbabilityPredictor(classifier),
        datamodule=instantiate(cfg.predict_data, source=source, **data_overrides),
        callbacks=callbacks,
    )
    run.trainer.predict(run.model, datamodule=run.datamodule, return_predictions=False)
    return writers[0].summary
