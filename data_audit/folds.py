"""Stratified fold assignment shared by both ways the audit gets out-of-sample probabilities: the
cross-fit's k training runs (``tasks/audit_cross_fit.py``) and the k logistic regressions on frozen
backbone features (:mod:`litvision.data_audit.feature_probabilities`)."""

from __future__ import annotations

import logging
import warnings

import numpy as np

from litvision.utils.errors import ConfigError
from litvision.utils.optional import require

log = logging.getLogger(__name__)


def fold_assignment(targets: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Fold index of every sample: stratified, so each fold keeps the class shares."""
    StratifiedKFold = require("sklearn.model_selection", "audit", "audit label_errors").StratifiedKFold

    if folds < 2:
        raise ConfigError(f"audit.label_errors.folds={folds}: cross-fitting needs at least 2 folds")
    targets = np.asarray(targets)
    counts = np.bincount(targets) if len(targets) else np.zeros(0, np.int64)
    smallest = int(counts[counts > 0].min()) if (counts > 0).any() else 0
    if smallest < folds:
        log.warning("audit: a class has %d image(s), fewer than %d folds: some folds see none of it", smallest, folds)
    assignment = np.empty(len(targets), np.int64)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the rare-class case, warned about above
        for k, (_, held_out) in enumerate(splitter.split(np.zeros(len(targets)), targets)):
            assignment[held_out] = k
    return assignment
