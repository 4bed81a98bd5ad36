"""``tune=lr_find``: Lightning's LR range test before fitting (``Tuner.lr_find``), on the run's own trainer.

Lightning does the search and restores the model, optimizer and loops afterwards; this module
adds what a run needs around it: the suggestion printed, in ``metrics.json``
(``tune/lr_suggestion``) and, with ``tune.apply=true``, set as the optimizer's LR (so the
checkpoints record it); the curve as ``<run dir>/lr_find.png`` (its points in ``lr_find.csv``) and in W&B.

Under DDP (``trainer=ddp``, every process runs the script) Lightning broadcasts rank 0's curve, so
every process gets the same suggestion. Under a launcher that starts the processes itself
(``ddp_spawn``, ``ddp_notebook``) the result stays in the worker processes: refused in one line.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import lightning as L
from omegaconf import DictConfig

from litvision.callbacks.metrics_summary import MetricsSummary
from litvision.utils.atomic_write import write_atomic, write_text_atomic
from litvision.utils.errors import ConfigError

if TYPE_CHECKING:
    from litvision.lightning_modules.classifier import ImageClassifier

log = logging.getLogger("litvision")

SUGGESTION_KEY = "tune/lr_suggestion"
PLOT_NAME = "lr_find.png"
CURVE_NAME = "lr_find.csv"
OPTIONS = ("name", "apply", "min_lr", "max_lr", "num_training", "mode", "early_stop_threshold")


def tune_options(cfg: DictConfig) -> DictConfig | None:
    """The ``tune`` node when it asks for a search (``tune=none`` composes to an empty node)."""
    options = cfg.get("tune")
    if not options:
        return None
    if options.get("name") != "lr_find":
        raise ConfigError(f"tune.name={options.get('name')!r}: choose tune=lr_find or tune=none")
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ConfigError(f"tune: unknown options {unknown}; tune=lr_find takes {list(OPTIONS[1:])}")
    return options


def check_strategy(trainer: L.Trainer) -> None:
    """Refuse launchers that run the search in other processes (its result would not come back)."""
    from lightning.pytorch.strategies.launchers.multiprocessing import _MultiProcessingLauncher

    launcher = getattr(trainer.strategy, "launcher", None)
    if isinstance(launcher, _MultiProcessingLauncher):
        raise ConfigError(
            f"tune=lr_find under trainer.strategy={type(trainer.strategy).__name__} ({launcher._start_method} "
            "processes): Lightning's LR finder result stays in the worker processes; use trainer=ddp (every process "
            "runs the script), or run tune=lr_find on one device first (trainer.devices=1) and pass its "
            "optimizer.lr"
        )


def find_lr(cfg: DictConfig, trainer: L.Trainer, model: L.LightningModule, datamodule: Any) -> float | None:
    """Run the range test if ``tune=lr_find``; return the suggestion (None: no tuning or no suggestion)."""
    options = tune_options(cfg)
    if options is None:
        return None
    check_strategy(trainer)
    from lightning.pytorch.tuner import Tuner

    max_epochs = trainer.fit_loop.max_epochs
    # the search counts optimizer steps: let it run over several epochs of a small dataset
    trainer.fit_loop.max_epochs = max(int(max_epochs or 1), int(options.num_training) + 1)
    try:
        finder = Tuner(trainer).lr_find(
            model,
            datamodule=datamodule,
            min_lr=float(options.min_lr),
            max_lr=float(options.max_lr),
            num_training=int(options.num_training),
            mode=str(options.mode),
            early_stop_threshold=options.early_stop_threshold,
            update_attr=False,
        )
    finally:
        trainer.fit_loop.max_epochs = max_epochs
    if finder is None:  # fast_dev_run: Lightning skips the search
        return None
    suggestion = finder.suggestion()
    if suggestion is not None and not math.isfinite(suggestion):
        suggestion = None
    _save_plot(cfg, trainer, finder, suggestion)
    _record(trainer, suggestion)
    if suggestion is None:
        log.warning("tune=lr_find: no suggestion (too few points or a flat curve): training with optimizer.lr")
        return None
    if options.apply:
        cast("ImageClassifier", model).set_learning_rate(suggestion)  # tune=lr_find is for our classifier
        log.info(
            "tune=lr_find: suggested LR %.3g, applied (tune.apply=true): optimizer.lr=%.3g", suggestion, suggestion
        )
    else:
        log.info(
            "tune=lr_find: suggested LR %.3g (not applied; tune.apply=true uses it, or pass optimizer.lr=%.3g)",
            suggestion,
            suggestion,
        )
    return suggestion


def _record(trainer: L.Trainer, suggestion: float | None) -> None:
    for callback in trainer.callbacks:  # type: ignore[attr-defined]  # Lightning sets it; Trainer does not declare it
        if isinstance(callback, MetricsSummary):
            callback.record(SUGGESTION_KEY, suggestion)


def _save_plot(cfg: DictConfig, trainer: L.Trainer, finder: Any, suggestion: float | None) -> None:
    if not trainer.is_global_zero:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure = finder.plot(suggest=suggestion is not None, show=False)
    figure.axes[0].set_title("LR range test" + (f": suggestion {suggestion:.3g}" if suggestion is not None else ""))
    path = Path(cfg.paths.output_dir) / PLOT_NAME
    write_atomic(path, lambda handle: figure.savefig(handle, format="png", dpi=100))
    plt.close(figure)
    rows = zip(finder.results["lr"], finder.results["loss"], strict=True)
    write_text_atomic(
        path.with_name(CURVE_NAME), "lr,loss\n" + "".join(f"{lr:.10g},{loss:.10g}\n" for lr, loss in rows)
    )
    log.info("tune=lr_find: the curve is in %s", path)
    from lightning.pytorch.loggers import WandbLogger

    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            import wandb

            payload: dict[str, Any] = {"tune/lr_find": wandb.Image(str(path))}
            if suggestion is not None:
                payload[SUGGESTION_KEY] = suggestion
            logger.experiment.log(payload)
