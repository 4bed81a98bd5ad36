"""``audit.label_errors.method=features``: the frozen backbone the audit takes features from, and the
out-of-sample probabilities of a k-fold logistic regression on them.

The backbone is either the run's ``model.backbone.weights=SOURCE`` (the model config's backbone built
from the registry, the weights loaded by the same code as training, the head dropped) or the network
of ``audit.ckpt_path=`` (loaded safely, :func:`~litvision.lightning_modules.checkpoints.load_classifier`).
It sees the images with the eval preprocessing that source carries (a published weight's or an
export's record, a checkpoint's record), unless ``augmentation`` is set on the command line; a source
without a record (a plain state dict) gets the augmentation config's eval transform.
"""

from __future__ import annotations

import copy
import logging
import time
from typing import Any

import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from litvision.data_audit.feature_probabilities import out_of_sample_probabilities
from litvision.data_audit.features import FeatureStore, headless
from litvision.data_audit.sources import AuditData
from litvision.utils.errors import ConfigError

log = logging.getLogger("litvision")

METHODS = ("cross_fit", "features")


def method_of(cfg: DictConfig) -> str:
    method = str(cfg.audit.label_errors.get("method", "cross_fit"))
    if method not in METHODS:
        raise ConfigError(f"audit.label_errors.method={method}: use one of {list(METHODS)}")
    return method


def weights_source(cfg: DictConfig) -> str | None:
    source = OmegaConf.select(cfg, "model.backbone.weights", default=None)
    return str(source) if source else None


def check_feature_options(cfg: DictConfig) -> None:
    """method=features needs exactly one backbone source and no fold jobs; checked before any data is read."""
    if method_of(cfg) != "features":
        return
    weights, ckpt_path = weights_source(cfg), cfg.audit.get("ckpt_path")
    if not weights and not ckpt_path:
        raise ConfigError(
            "audit.label_errors.method=features needs a backbone to take features from: add "
            "model.backbone.weights=SOURCE (a .safetensors/.pth/.ckpt file or e.g. "
            "torchvision:ResNet50_Weights.IMAGENET1K_V2) or audit.ckpt_path=CKPT"
        )
    if weights and ckpt_path:
        raise ConfigError(
            f"audit.label_errors.method=features takes one backbone: model.backbone.weights={weights} or "
            f"audit.ckpt_path={ckpt_path}, not both"
        )
    if cfg.audit.get("fold") is not None:
        raise ConfigError("audit.fold is a cross-fit job: audit.label_errors.method=features trains no folds")
    if weights:
        from litvision.lightning_modules.weights import check_source

        check_source(weights, None)  # a bad name or a missing file fails now, not after the scan


def feature_store(cfg: DictConfig, data: AuditData) -> FeatureStore:
    """The run's frozen backbone, ready to embed the audit's images."""
    if weights_source(cfg):
        network, overrides, source = _weights_backbone(cfg, data)
    else:
        network, overrides, source = _checkpoint_backbone(cfg)
    dm = data.datamodule
    transform = overrides.get("eval_transform", dm.eval_transform) if overrides else dm.eval_transform
    normalize = overrides.get("normalize", dm.normalize) if overrides else dm.normalize
    return FeatureStore(data, network, transform, normalize, source, int(cfg.dataset.get("batch_size", 64)))


def _weights_backbone(cfg: DictConfig, data: AuditData) -> tuple[Any, dict[str, Any], str]:
    from litvision.datamodules.transforms.preprocessing import batch_normalize, eval_transform
    from litvision.lightning_modules.weights import source_preprocessing
    from litvision.tasks.preprocessing import augmentation_set_by_user

    weights = weights_source(cfg)
    assert weights is not None
    model = instantiate(copy.deepcopy(cfg.model), class_names=list(data.class_names))  # builds the backbone (+ a head)
    model.load_backbone_weights()  # the load report: the head is new when the classes differ
    source = f"model.backbone.weights={weights}"
    record = source_preprocessing(weights)
    overrides: dict[str, Any] = {}
    if record is None:
        log.info("audit: %s carries no preprocessing: the augmentation config's eval transform is used", source)
    elif augmentation_set_by_user():
        log.warning(
            "audit: %s on the command line: using it, not the preprocessing of %s (%s)",
            " ".join(augmentation_set_by_user()),
            source,
            record.describe(),
        )
    else:
        log.info("audit: features with the preprocessing of %s: %s", source, record.describe())
        overrides = {"eval_transform": eval_transform(record), "normalize": batch_normalize(record)}
    return headless(model.net), overrides, source


def _checkpoint_backbone(cfg: DictConfig) -> tuple[Any, dict[str, Any], str]:
    from pathlib import Path

    from litvision.lightning_modules.checkpoints import load_classifier
    from litvision.tasks.build import checkpoint_trust
    from litvision.tasks.preprocessing import checkpoint_data_overrides
    from litvision.utils.errors import MissingDataError

    ckpt_path = str(cfg.audit.ckpt_path)
    if not Path(ckpt_path).is_file():
        raise MissingDataError(f"audit.ckpt_path={ckpt_path} does not exist (pass a .ckpt file)")
    classifier = load_classifier(ckpt_path, map_location="cpu", **checkpoint_trust(cfg))
    overrides = checkpoint_data_overrides(cfg, classifier, ckpt_path)
    return headless(classifier.net), overrides, f"audit.ckpt_path={ckpt_path}"


def feature_probabilities(
    cfg: DictConfig, data: AuditData, store: FeatureStore
) -> tuple[np.ndarray, np.ndarray, np.ndarray, str, dict[str, float]]:
    """(ids, labels, probabilities, a sentence for the report, timings) of the training source split."""
    options = cfg.audit.label_errors
    split = data.splits[data.train_split]
    ids, labels = split.ids, split.targets
    features = store.features(ids.tolist())
    folds, fit_options = int(options.folds), options.get("features") or {}
    C, max_iter = float(fit_options.get("C", 1.0)), int(fit_options.get("max_iter", 1000))
    start = time.perf_counter()
    probabilities = out_of_sample_probabilities(
        features, labels, len(data.class_names), folds, int(options.fold_seed), C, max_iter
    )
    fit_seconds = time.perf_counter() - start
    log.info(
        "audit: %d-fold logistic regression on %d x %d features: %.1f s (embedding took %.1f s)",
        folds,
        *features.shape,
        fit_seconds,
        store.seconds,
    )
    source = (
        f"method `features`: {folds}-fold logistic regression (C={C}) on the frozen features of {store.source} "
        f"({features.shape[1]} per image) of source split `{split.name}`"
    )
    # the embedding of every image this run needed (the duplicate section's pairs too), each once
    timings = {"embed_seconds": store.seconds, "fit_seconds": fit_seconds}
    return ids, labels, probabilities, source, timings
