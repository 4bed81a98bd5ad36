"""Can this run resume that checkpoint? Refused in one line, before Lightning restores anything.

``ckpt_path=`` continues a run: the same model, on the same data, with the same optimizer and
LR schedule (a larger ``trainer.max_epochs`` re-plans the schedule: README "Resume"). The
checkpoint of another run would fail deep inside Lightning (``Error(s) in loading
state_dict``, ``KeyError: 'lr_lambdas'``, "Tried to step N times", a MisconfigurationException
on epochs) or, with the same number of classes, train on silently under other labels.
Starting a new run from a checkpoint's weights is what ``model.backbone.weights=`` is for.
Each check runs as soon as its facts are known:

* :func:`check_resume_config` (the train task, before the loggers start): the architecture,
  the optimizer (and its settings, which the checkpoint would restore over the config's), the
  scheduler's type, and the epochs already done against ``trainer.max_epochs``;
* :func:`check_resume_classes` (the classifier's ``on_load_checkpoint``, once the data is set
  up): the class names;
* :func:`check_resume_steps` (``configure_optimizers``): optimizer steps per epoch, which
  change with the dataset size, batch size, devices or ``limit_train_batches``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from litvision.utils.errors import ConfigError, DataError

# what the classifier records in its checkpoints about the run's plan (see plan_record)
PLAN_KEY = "litvision_plan"


FINETUNE_PACKAGE = "litvision.lightning_modules.finetune"


def _network(backbone: Any) -> Any:
    """The architecture a backbone config builds: its ``weights`` (where training started) do not change it."""
    if isinstance(backbone, Mapping):
        return {key: value for key, value in backbone.items() if key != "weights"}
    return backbone


def _strategy(config: Any) -> Any:
    """``finetune``, with the default (``full``, ``bn=train``) and none (checkpoints from before it) alike."""
    if not isinstance(config, Mapping):
        return None
    settings = {key: value for key, value in config.items() if key != "_partial_"}
    default = {"_target_": f"{FINETUNE_PACKAGE}.Full"}
    return None if settings in (default, {**default, "bn": "train"}) else settings


def check_resume_config(
    path: Any, checkpoint: Mapping[str, Any], model_hparams: Mapping[str, Any], trainer: Any
) -> None:
    """Architecture, optimizer and schedule of the checkpoint against this run's model and trainer."""
    hparams = checkpoint.get("hyper_parameters")
    if not isinstance(hparams, Mapping) or "backbone" not in hparams:
        raise DataError(
            f"ckpt_path={path} is not a litvision model checkpoint (no hyper-parameters): it cannot be resumed"
        )
    if "backbone" in model_hparams and _network(hparams["backbone"]) != _network(model_hparams["backbone"]):
        _refuse(
            path,
            f"it holds a {describe_factory(hparams['backbone'])} model, the config asks for "
            f"{describe_factory(model_hparams['backbone'])} (model=...)",
        )
    # the optimizer's settings are restored from the checkpoint (a changed lr would be silently ignored), the
    # scheduler's are re-planned like a larger max_epochs (e.g. warmup_fraction: ${lv.div:5,${trainer.max_epochs}})
    compared = {
        "optimizer": lambda config: config,
        "weight_decay_norm_bias": lambda value: value,
        "scheduler": lambda config: {"_target_": config.get("_target_")} if isinstance(config, Mapping) else config,
        # the strategy decides the optimizer's groups: another one cannot take this optimizer state
        "finetune": _strategy,
    }
    differences = [
        f"{key}: {describe_factory(same(hparams.get(key)))} in the checkpoint, "
        f"{describe_factory(same(model_hparams.get(key)))} in the config ({key}=...)"
        for key, same in compared.items()
        if key in model_hparams and same(hparams.get(key)) != same(model_hparams.get(key))
    ]
    done = epochs_done(checkpoint)
    max_epochs = getattr(trainer, "max_epochs", None)
    if done is not None and max_epochs not in (None, -1) and done > max_epochs:
        differences.append(f"it has trained {done} epochs, the config's trainer.max_epochs={max_epochs} is fewer")
    if differences:
        _refuse(path, "; ".join(differences))


def check_resume_classes(path: Any, checkpoint: Mapping[str, Any], data_names: Sequence[str], data_name: str) -> None:
    """The checkpoint's class names against the dataset's (other names: another dataset)."""
    names = (checkpoint.get("hyper_parameters") or {}).get("class_names")
    if names is None or list(names) == list(data_names):
        return
    what = class_difference(list(data_names), list(names))
    _refuse(
        path, f"it was trained on other classes than {data_name}'s ({what}; the checkpoint has {short(list(names))})"
    )


def check_resume_steps(path: Any, plan: Mapping[str, Any] | None, steps_per_epoch: float) -> None:
    """Optimizer steps per epoch of the checkpoint's run against this run's (its LR schedule depends on them)."""
    recorded = (plan or {}).get("steps_per_epoch")
    if recorded is None or not math.isfinite(steps_per_epoch):  # unknown (an iterable dataset without a length)
        return
    if int(recorded) != int(steps_per_epoch):
        _refuse(
            path,
            f"its run took {recorded} optimizer steps per epoch, this one takes {int(steps_per_epoch)} "
            "(another dataset size, dataset.batch_size, number of devices, limit_train_batches or "
            "accumulate_grad_batches)",
        )


def plan_record(trainer: Any) -> dict[str, Any]:
    """What a checkpoint keeps about its run's plan, for :func:`check_resume_steps`."""
    batches = getattr(trainer, "num_training_batches", float("inf"))
    accumulate = max(int(getattr(trainer, "accumulate_grad_batches", 1) or 1), 1)
    finite = math.isfinite(batches)
    return {
        "steps_per_epoch": -(-int(batches) // accumulate) if finite else None,  # Lightning's ceil
        "max_epochs": getattr(trainer, "max_epochs", None),
        "max_steps": getattr(trainer, "max_steps", None),
    }


def epochs_done(checkpoint: Mapping[str, Any]) -> int | None:
    """Epochs the checkpoint's run finished (what Lightning's ``current_epoch`` is after restoring it)."""
    try:
        return int(checkpoint["loops"]["fit_loop"]["epoch_progress"]["current"]["processed"])
    except (KeyError, TypeError, ValueError):
        return None


def describe_factory(config: Any) -> str:
    """``small_cnn (width=8)``, ``SGD (lr=0.1, momentum=0.9)``, ``none``: a factory config in a few words."""
    if config is None:
        return "none"
    if not isinstance(config, Mapping):
        return repr(config)
    target = str(config.get("_target_", "?"))
    args = list(config.get("_args_") or [])
    kwargs = {key: value for key, value in config.items() if not str(key).startswith("_")}
    if target.endswith(".build_backbone"):
        head = str(args.pop(0) if args else kwargs.pop("name", "?"))
    else:
        head = target.rsplit(".", 1)[-1]
    details = ", ".join([*(repr(arg) for arg in args), *(f"{key}={value}" for key, value in kwargs.items())])
    return f"{head} ({details})" if details else head


def class_difference(data_names: list[str], model_names: list[str]) -> str:
    """How the dataset's class names differ from the model's, in a few words."""
    unknown = [name for name in data_names if name not in model_names]
    if unknown:
        return f"class names unknown to the model: {short(unknown)}"
    if len(data_names) != len(model_names):
        return f"{len(data_names)} classes for a model of {len(model_names)}"
    first = next(i for i, (a, b) in enumerate(zip(data_names, model_names, strict=True)) if a != b)
    return (
        f"the same names in another order (class {first} is {data_names[first]!r}, the model's {model_names[first]!r})"
    )


def short(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(repr(name) for name in names[:limit])
    return f"[{shown}{', ...' if len(names) > limit else ''}]"


def _refuse(path: Any, what: str) -> None:
    raise ConfigError(
        f"ckpt_path={path} cannot be resumed by this run: {what}. A resume continues the same run; to start a new "
        f"run from these weights instead, use model.backbone.weights={path} (without ckpt_path)"
    )
