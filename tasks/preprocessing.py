"""Preprocessing that travels: from the weights into a training run, from the run into its checkpoints,
from a checkpoint into eval.py, predict.py and the audit's checkpoint mode.

* Training (:func:`apply_weights_preprocessing`): a ``model.backbone.weights=`` source that carries
  its eval preprocessing (torchvision's published weights, a litvision checkpoint or export) fills
  the ``weights_preprocessing`` node, which the augmentation options take their normalisation (and
  ``augmentation=imagenet``: resolution, crop fraction, interpolation) from by default. A value set
  in a preset or on the command line replaces the default, and a warning names what differs from
  the weights'.
* Every training run records the eval preprocessing it actually used in the model's
  hyper-parameters, so in every checkpoint (:func:`record_run_preprocessing`).
* Evaluation (:func:`checkpoint_data_overrides`): the checkpoint's record becomes the eval
  transform and normalisation of the data, unless ``augmentation`` is set on the command line.

The record is plain numbers and names (:mod:`litvision.utils.preprocessing`), made into transforms
by :mod:`litvision.datamodules.transforms.preprocessing`; nothing a file names is built.
"""

from __future__ import annotations

import logging
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from litvision.datamodules.transforms.preprocessing import (
    CV2_INTERPOLATION,
    INTERPOLATION_NAME,
    batch_normalize,
    describe,
    eval_transform,
)
from litvision.lightning_modules.weights import source_preprocessing
from litvision.utils.checkpoint_io import load_checkpoint
from litvision.utils.preprocessing import Preprocessing

log = logging.getLogger("litvision")

NODE = "weights_preprocessing"


def command_line_overrides() -> list[tuple[str, str]]:
    """(key or group, the override as typed) of this job's command line (Hydra's task overrides); [] outside Hydra."""
    if not HydraConfig.initialized():
        return []
    from hydra.core.override_parser.overrides_parser import OverridesParser

    overrides = list(HydraConfig.get().overrides.task)
    return [
        (o.key_or_group, o.input_line or o.key_or_group) for o in OverridesParser.create().parse_overrides(overrides)
    ]


def augmentation_set_by_user() -> list[str]:
    """The ``augmentation=...`` / ``augmentation.<key>=...`` overrides on the command line, as typed."""
    return [
        typed for key, typed in command_line_overrides() if key == "augmentation" or key.startswith("augmentation.")
    ]


# ---- training --------------------------------------------------------------------------------
def weights_record(cfg: DictConfig, resume_from: str | None = None) -> tuple[Preprocessing | None, str]:
    """(the preprocessing ``model.backbone.weights`` carries, the source); a resume may take the
    record its checkpoint stored (the same values) when the source file is gone."""
    source = OmegaConf.select(cfg, "model.backbone.weights", default=None)
    if not source:
        return None, ""
    try:
        return source_preprocessing(source), str(source)
    except FileNotFoundError:
        if resume_from is None:
            raise
    stored = load_checkpoint(resume_from).get("hyper_parameters", {}).get("preprocessing")
    return (Preprocessing.from_dict(stored, f"ckpt_path={resume_from}") if stored else None), str(source)


def apply_weights_preprocessing(cfg: DictConfig, resume_from: str | None = None) -> Preprocessing | None:
    """Fill ``cfg.weights_preprocessing`` from the weights (in place); warn where the config sets other values."""
    record, source = weights_record(cfg, resume_from)
    if record is None:
        if source:
            log.info("model.backbone.weights=%s carries no preprocessing: the augmentation's is used", source)
        return None
    node: dict[str, Any] = {"source": source, "mean": list(record.mean), "std": list(record.std)}
    if record.resolution is not None:
        node["resolution"] = record.resolution
    if record.crop is not None and record.resize is not None:
        node["crop_fraction"] = record.crop / record.resize
    node["interpolation"] = CV2_INTERPOLATION[record.interpolation]
    with open_dict(cfg):
        cfg[NODE] = node
    differences = _config_differences(cfg.get("augmentation"), record)
    if differences:
        log.warning(
            "the augmentation config sets %s, where model.backbone.weights=%s expects %s: using the config's values",
            "; ".join(differences),
            source,
            record.describe(),
        )
    else:
        log.info("preprocessing from model.backbone.weights=%s: %s", source, record.describe())
    return record


def _config_differences(augmentation: DictConfig | None, record: Preprocessing) -> list[str]:
    """What the resolved augmentation config sets differently from ``record``."""
    if augmentation is None:
        return ["no augmentation"]
    found = []
    normalize = augmentation.get("normalize") or {}
    for name in ("mean", "std"):
        value = normalize.get(name)
        if value is not None:
            values = tuple(float(v) for v in value)
            expected = getattr(record, name)
            if len(values) != len(expected) or any(abs(a - b) > 1e-4 for a, b in zip(values, expected, strict=False)):
                found.append(f"augmentation.normalize.{name}={list(values)}")
    if record.resolution is None:
        return found
    if "resolution" not in augmentation:
        found.append(
            f"no resolution (augmentation has no `resolution`: images go in at their own size, not {record.resolution})"
        )
        return found
    resolution = int(augmentation.resolution)
    if resolution != record.resolution:
        found.append(f"augmentation.resolution={resolution}")
    elif record.resize is not None and augmentation.get("eval_resize") is not None:
        if int(augmentation.eval_resize) != record.resize:
            found.append(f"an eval resize of {int(augmentation.eval_resize)} (augmentation.crop_fraction)")
    code = augmentation.get("interpolation")
    if code is not None and INTERPOLATION_NAME.get(int(code)) != record.interpolation:
        found.append(f"augmentation.interpolation={code}")
    return found


def record_run_preprocessing(model: Any, datamodule: Any, cfg: DictConfig) -> Preprocessing | None:
    """Store the run's actual eval preprocessing in the model's hyper-parameters (so in every checkpoint)."""
    augmentation = cfg.get("augmentation")
    resolution = augmentation.get("resolution") if isinstance(augmentation, DictConfig) else None
    record, why = describe(
        getattr(datamodule, "eval_transform", None),
        getattr(datamodule, "normalize", None),
        resolution=int(resolution) if resolution is not None else None,
    )
    if record is None:
        log.warning(
            "the checkpoints will not record the eval preprocessing (%s): eval.py and predict.py images= will "
            "need the same augmentation=... as this run",
            why,
        )
    hparams = getattr(model, "hparams", None)
    if hparams is not None:
        hparams["preprocessing"] = record.to_dict() if record is not None else None
    return record


# ---- evaluation --------------------------------------------------------------------------------
def checkpoint_data_overrides(cfg: DictConfig, classifier: Any, ckpt_path: str) -> dict[str, Any]:
    """``eval_transform``/``normalize`` for the data, from the checkpoint's record; {} to keep the config's
    (an older checkpoint without a record, or ``augmentation`` set on the command line)."""
    stored = classifier.hparams.get("preprocessing") if hasattr(classifier, "hparams") else None
    if not stored:
        log.info(
            "ckpt_path=%s records no preprocessing (an older checkpoint): using the augmentation config", ckpt_path
        )
        return {}
    record = Preprocessing.from_dict(stored, f"ckpt_path={ckpt_path}")
    overridden = augmentation_set_by_user()
    if overridden:
        mine = _described_config(cfg)
        differences = mine.differences(record) if mine is not None else ["an eval transform a record cannot describe"]
        if differences:
            log.warning(
                "%s on the command line: using it, not the eval preprocessing the checkpoint was trained with "
                "(%s; differs in %s)",
                " ".join(overridden),
                record.describe(),
                ", ".join(differences),
            )
        return {}
    log.info("eval preprocessing from ckpt_path=%s: %s", ckpt_path, record.describe())
    return {"eval_transform": eval_transform(record), "normalize": batch_normalize(record)}


def _described_config(cfg: DictConfig) -> Preprocessing | None:
    from hydra.utils import instantiate

    augmentation = cfg.get("augmentation")
    if not isinstance(augmentation, DictConfig):
        return None
    transform = instantiate(augmentation.eval) if augmentation.get("eval") is not None else None
    normalize = instantiate(augmentation.normalize) if augmentation.get("normalize") is not None else None
    resolution = augmentation.get("resolution")
    record, _ = describe(transform, normalize, int(resolution) if resolution is not None else None)
    return record
