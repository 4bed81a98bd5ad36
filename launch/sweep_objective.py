"""What a sweep optimises: the metric's direction, and the value a job reports to the sweeper."""

from __future__ import annotations

import logging
import math
from typing import Any

from omegaconf import DictConfig

log = logging.getLogger(__name__)
MINIMIZE_HINTS = ("loss", "error", "err", "nll", "ece", "perplexity")


def metric_direction(name: str | None, hydra_cfg: DictConfig | None = None) -> str:
    """``maximize``/``minimize``: the sweeper's own setting if it has one, else from the name."""
    sweeper = hydra_cfg.get("sweeper") if hydra_cfg is not None else None
    direction = sweeper.get("direction") if isinstance(sweeper, DictConfig) else None
    if direction is not None and not isinstance(direction, str):
        direction = list(direction)[0]  # multi-objective: the first objective orders the table
    if direction:
        direction = str(direction).lower().split(".")[-1]  # "StudyDirection.MAXIMIZE" too
        if direction not in ("maximize", "minimize"):
            raise ValueError(f"sweeper direction must be maximize or minimize, got {direction!r}")
        return direction
    leaf = (name or "").lower().rsplit("/", 1)[-1]
    return "minimize" if any(hint in leaf for hint in MINIMIZE_HINTS) else "maximize"


def worst_value(direction: str) -> float:
    """What a diverged job reports to a sweeper: finite comparisons, never NaN (Optuna rejects NaN)."""
    return float("-inf") if direction == "maximize" else float("inf")


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
        log.warning(
            "optimized_metric %s is %s (diverged run): reporting %s to the sweeper", name, value, worst_value(direction)
        )
        return worst_value(direction)
    return float(value)
