"""Out-of-sample probabilities from frozen features: k-fold multinomial logistic regression.

With a strong pretrained feature extractor, a linear model on its features predicts held-out images
about as well as fine-tuning would, in seconds instead of k training runs: the approach cleanlab
recommends for such extractors (``cleanlab.filter.find_label_issues`` on
``cross_val_predict(LogisticRegression(), features, labels)``). Each image's probabilities come from
the model fitted on the other folds (the same stratified folds as the cross-fit,
:func:`~litvision.data_audit.folds.fold_assignment`). Features are standardised per fold on its
training part (a scikit-learn pipeline), so the regularisation ``C`` means the same for any backbone.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np

from litvision.data_audit.folds import fold_assignment
from litvision.utils.optional import require

log = logging.getLogger(__name__)
WHAT = "audit label_errors method=features"


def logistic_regression(C: float, max_iter: int):
    """Standardise, then multinomial logistic regression (lbfgs: deterministic, no random state)."""
    pipeline = require("sklearn.pipeline", "audit", WHAT)
    linear_model = require("sklearn.linear_model", "audit", WHAT)
    preprocessing = require("sklearn.preprocessing", "audit", WHAT)
    return pipeline.make_pipeline(
        preprocessing.StandardScaler(), linear_model.LogisticRegression(C=C, max_iter=max_iter)
    )


def out_of_sample_probabilities(
    features: np.ndarray, labels: np.ndarray, num_classes: int, folds: int, seed: int, C: float, max_iter: int
) -> np.ndarray:
    """(N, num_classes) float32: row i from the regression fitted without image i's fold; NaN rows for
    images without features (unreadable). A class missing from a fold's training part gets probability 0."""
    ConvergenceWarning = require("sklearn.exceptions", "audit", WHAT).ConvergenceWarning

    features, labels = np.asarray(features, np.float32), np.asarray(labels, np.int64)
    usable = ~np.isnan(features).any(axis=1)
    probabilities = np.full((len(labels), num_classes), np.nan, np.float32)
    if not usable.any():
        return probabilities
    rows = np.flatnonzero(usable)
    assignment = fold_assignment(labels[rows], folds, seed)
    unconverged = 0
    for k in range(folds):
        train, held = rows[assignment != k], rows[assignment == k]
        if len(held) == 0:
            continue
        model = logistic_regression(C, max_iter)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            model.fit(features[train], labels[train])
        unconverged += sum(issubclass(w.category, ConvergenceWarning) for w in caught)
        predicted = np.zeros((len(held), num_classes), np.float32)
        predicted[:, model.classes_] = model.predict_proba(features[held])
        probabilities[held] = predicted
    if unconverged:
        log.warning(
            "audit: the logistic regression did not converge in %d of %d folds within "
            "audit.label_errors.features.max_iter=%d iterations: raise it (or lower audit.label_errors.features.C)",
            unconverged,
            folds,
            max_iter,
        )
    return probabilities
