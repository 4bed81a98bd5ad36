"""What a checkpoint FILE may build: the allowlist of ``_target_``s litvision vouches for.

A checkpoint loads with ``torch.load(weights_only=True)``, so unpickling it runs no code. Its
hyper-parameters, though, name the backbone, optimizer, scheduler, loss and fine-tuning strategy as ``_target_``
strings that the classifier instantiates: a file from someone else could name any importable
callable (``os.system``, or a litvision function that opens a ``pipe:`` URL), nested inside an
argument too. So before a model is built from a file, its hyper-parameters are checked here,
as strings (nothing is imported to decide):

* ``backbone``: the registry's ``build_backbone`` (and the registry's own classes), timm's
  ``create_model`` when timm is installed (without the arguments that make it read a file or a
  hub config);
* ``optimizer``: ``torch.optim`` optimizers, litvision's optimizer helpers;
* ``scheduler``, ``loss`` and ``finetune``: litvision's own factories and strategies;
* their arguments: plain values only: no nested ``_target_`` and no ``${...}`` (OmegaConf
  resolves it when the factory is instantiated, and ``${oc.create:...}`` makes a new
  ``_target_``); no ``_target_`` in any other hyper-parameter.

Anything else is refused in one line naming the hyper-parameter and the target. A user who
trusts a file says so: ``trust_checkpoint_targets=[my.module.Factory]`` (those targets are
allowed anywhere, nested too) or ``trust_checkpoint=true`` (no check here; the file is still
read with ``weights_only=True``). A model built from a config the user wrote is not checked.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from litvision.lightning_modules import finetune
from litvision.lightning_modules.backbones import BACKBONES, build_backbone
from litvision.lightning_modules.training import losses, optimizers, schedulers
from litvision.utils.errors import ConfigError, DataError

FACTORY_KEYS = ("backbone", "optimizer", "scheduler", "loss", "finetune")
# hyper-parameters the classifier hands to hydra's instantiate (so ${...} is resolved there)
INSTANTIATED_KEYS = (*FACTORY_KEYS, "mixing")
BACKBONE_PACKAGE = "litvision.lightning_modules.backbones"
TIMM_CREATE_MODEL = ("timm.create_model", "timm.models.create_model", "timm.models._factory.create_model")
# create_model arguments that make timm read a local file or fetch a config/weights by name
TIMM_FILE_ARGUMENTS = ("checkpoint_path", "pretrained_cfg", "pretrained_cfg_overlay", "cache_dir")

# modules that moved (issue 18's layout): checkpoints written before name them by their old path
MOVED_MODULES = {
    f"litvision.lightning_modules.{name}.": f"litvision.lightning_modules.training.{name}."
    for name in ("losses", "schedulers", "optimizers", "mixing")
}


def with_moved_targets(value: Any) -> Any:
    """``value`` with every ``_target_`` string of a moved module renamed to where it lives now (a
    plain string rewrite: nothing is imported), so checkpoints from before the move still load."""
    if isinstance(value, Mapping):
        renamed = {key: with_moved_targets(item) for key, item in value.items()}
        target = renamed.get("_target_")
        if isinstance(target, str):
            for old, new in MOVED_MODULES.items():
                if target.startswith(old):
                    renamed["_target_"] = new + target[len(old) :]
        return renamed
    if isinstance(value, list | tuple):
        return type(value)(with_moved_targets(item) for item in value)
    return value


def dotted_name(obj: Any) -> str:
    return f"{obj.__module__}.{obj.__qualname__}"


def _backbone_targets() -> set[str]:
    """``build_backbone`` and every registry entry, as defined and as the package re-exports it."""
    import litvision.lightning_modules.backbones as package

    names = {dotted_name(build_backbone)}
    for factory in BACKBONES.values():
        names.add(dotted_name(factory))
        if getattr(package, factory.__name__, None) is factory:
            names.add(f"{BACKBONE_PACKAGE}.{factory.__name__}")
    if importlib.util.find_spec("timm") is not None:  # finds the package without importing it
        names.update(TIMM_CREATE_MODEL)
    return names


def _torch_optimizers() -> set[str]:
    """Every ``torch.optim`` optimizer under both of its names (``torch.optim.SGD``, ``torch.optim.sgd.SGD``)."""
    names = set()
    for name in torch.optim.__all__:
        found = getattr(torch.optim, name, None)
        if isinstance(found, type) and issubclass(found, torch.optim.Optimizer) and found is not torch.optim.Optimizer:
            names.update({f"torch.optim.{name}", dotted_name(found)})
    return names


def builtin_targets() -> dict[str, frozenset[str]]:
    """Per hyper-parameter, the targets litvision builds from any checkpoint."""
    return {
        "backbone": frozenset(_backbone_targets()),
        "optimizer": frozenset(_torch_optimizers() | {dotted_name(optimizers.sgd_scaled_vectors)}),
        "scheduler": frozenset(
            dotted_name(f)
            for f in (schedulers.warmup_cosine, schedulers.one_cycle, schedulers.multistep, schedulers.triangular)
        ),
        "loss": frozenset(
            dotted_name(f)
            for f in (losses.cross_entropy, losses.class_balanced, losses.focal, losses.logit_adjusted, losses.drw)
        ),
        "finetune": frozenset(
            name
            for cls in (finetune.Full, finetune.LinearProbe, finetune.FreezeUnfreeze, finetune.LayerDecay)
            for name in (dotted_name(cls), f"litvision.lightning_modules.finetune.{cls.__name__}")
        ),
    }


@dataclass(frozen=True)
class CheckpointTrust:
    """What the user vouches for: every target (``trust_checkpoint``) or a few more (``trust_checkpoint_targets``)."""

    everything: bool = False
    targets: frozenset[str] = frozenset()

    @classmethod
    def of(cls, trust_checkpoint: Any = False, trust_checkpoint_targets: Any = ()) -> CheckpointTrust:
        """From the config keys / keyword arguments of the same names (checked: one line if malformed)."""
        if not isinstance(trust_checkpoint, bool):
            raise ConfigError(f"trust_checkpoint={trust_checkpoint!r}: must be true or false (default false)")
        targets = trust_checkpoint_targets or ()
        if isinstance(targets, str):
            targets = [targets]
        targets = list(targets)
        if not all(isinstance(target, str) and target for target in targets):
            raise ConfigError(
                f"trust_checkpoint_targets={targets!r}: must be a list of dotted names, e.g. "
                "trust_checkpoint_targets=[my.module.Factory]"
            )
        return cls(everything=trust_checkpoint, targets=frozenset(targets))


def check_checkpoint_targets(
    hparams: Mapping[str, Any], source: str, trust: CheckpointTrust = CheckpointTrust()
) -> None:
    """Refuse (DataError, one line) hyper-parameters that would build anything but the allowlist's targets."""
    if trust.everything:
        return
    allowed = builtin_targets()
    for key, value in hparams.items():
        if key in FACTORY_KEYS and isinstance(value, Mapping) and "_target_" in value:
            _check_factory(key, value, allowed[key], source, trust)
        else:
            _check_arguments(key, value, key in INSTANTIATED_KEYS, source, trust)


def _check_factory(
    key: str, config: Mapping[str, Any], allowed: frozenset[str], source: str, trust: CheckpointTrust
) -> None:
    target = config["_target_"]
    if not isinstance(target, str) or (target not in allowed and target not in trust.targets):
        raise DataError(
            f"{source}: hyper-parameter {key}._target_={target!r} is not something litvision builds from a "
            f"checkpoint ({_allowed_kinds(key)}): refused, nothing was imported or called. "
            f"{_trust_hint(target)}"
        )
    if target in TIMM_CREATE_MODEL and target not in trust.targets:
        _check_timm(key, config, source)
    for name, value in config.items():
        if name != "_target_":
            _check_arguments(f"{key}.{name}", value, True, source, trust)


def _check_arguments(path: str, value: Any, instantiated: bool, source: str, trust: CheckpointTrust) -> None:
    """No ``_target_`` at any depth (unless the user trusts it) and, where hydra resolves, no ``${``."""
    if isinstance(value, Mapping):
        target = value.get("_target_")
        if target is not None and (not isinstance(target, str) or target not in trust.targets):
            raise DataError(
                f"{source}: hyper-parameter {path} holds _target_={target!r}, which a checkpoint may not build "
                f"(only backbone, optimizer, scheduler, loss and finetune name a target, and their arguments are plain "
                f"values): refused, nothing was imported or called. {_trust_hint(target)}"
            )
        for name, item in value.items():
            _check_arguments(f"{path}.{name}", item, instantiated, source, trust)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_arguments(f"{path}[{index}]", item, instantiated, source, trust)
    elif instantiated and isinstance(value, str) and "${" in value:
        raise DataError(
            f"{source}: hyper-parameter {path}={value!r} is an interpolation (OmegaConf would resolve it, and could "
            f"build a target from it): a checkpoint's arguments must be plain values, refused. If you trust this "
            f"file: trust_checkpoint=true"
        )


def _check_timm(key: str, config: Mapping[str, Any], source: str) -> None:
    args = list(config.get("_args_") or [])
    model_name = args[0] if args else config.get("model_name")
    reads = [name for name in TIMM_FILE_ARGUMENTS if config.get(name) not in (None, "", {})]
    if len(args) > 2:  # create_model(model_name, pretrained, pretrained_cfg, ...): only the first two
        reads.append("_args_")
    if isinstance(model_name, str) and ":" in model_name:  # hf-hub:..., local-dir:...
        reads.append(f"model_name={model_name!r}")
    if reads:
        raise DataError(
            f"{source}: hyper-parameter {key} asks timm's create_model to read files or hub configs "
            f"({', '.join(reads)}): refused from a checkpoint. If you trust this file: trust_checkpoint=true"
        )


def _allowed_kinds(key: str) -> str:
    return {
        "backbone": f"{BACKBONE_PACKAGE}.build_backbone and its registry's models, timm.create_model when timm is installed",
        "optimizer": "torch.optim optimizers and litvision.lightning_modules.training.optimizers",
        "scheduler": "litvision.lightning_modules.training.schedulers",
        "loss": "litvision.lightning_modules.training.losses",
        "finetune": "litvision.lightning_modules.finetune's strategies",
    }[key]


def _trust_hint(target: Any) -> str:
    return f"If you trust this file: trust_checkpoint_targets=[{target}] (or trust_checkpoint=true)"


def targets_in(config: Any) -> Iterable[str]:
    """Every ``_target_`` string in a (plain) config: what a config the user wrote asks to build."""
    if isinstance(config, Mapping):
        if isinstance(config.get("_target_"), str):
            yield config["_target_"]
        for value in config.values():
            yield from targets_in(value)
    elif isinstance(config, (list, tuple)):
        for value in config:
            yield from targets_in(value)
