"""Factories as plain configs: what the classifier keeps in a checkpoint's hyper-parameters.

A checkpoint must load with ``torch.load(weights_only=True)``: loading one must not run
code, so its hyper-parameters may only hold dicts, lists, strings, numbers, booleans and
None (no pickled functions or classes). The classifier therefore receives its backbone,
optimizer, scheduler and loss as Hydra configs (``_target_`` plus arguments; the model
config has ``_recursive_: false`` so Hydra hands them over uninstantiated), stores them
as plain dicts and instantiates them itself. In plain Python a ``functools.partial`` of an
importable function or class with plain arguments is accepted and converted to the same
config; anything else is refused with a ConfigError.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from litvision.utils.errors import ConfigError

PLAIN_SCALARS = (str, int, float, bool, type(None))


def is_plain(value: Any) -> bool:
    """True for what ``torch.load(weights_only=True)`` reads back: nested dicts/lists of scalars."""
    if isinstance(value, PLAIN_SCALARS):
        return True
    if isinstance(value, (list, tuple)):
        return all(is_plain(item) for item in value)
    if isinstance(value, dict):
        return all(isinstance(key, str) and is_plain(item) for key, item in value.items())
    return False


def factory_config(value: Any, name: str) -> dict[str, Any] | None:
    """``value`` (a config with ``_target_``, a partial, or None) as a plain factory config.

    The result always has ``_partial_: true``: the classifier calls it with the arguments it
    knows only later (``num_classes``, the parameters, ``total_steps``, ``class_counts``).
    """
    if value is None:
        return None
    if isinstance(value, (DictConfig, ListConfig)):
        value = OmegaConf.to_container(value, resolve=True)
    if isinstance(value, functools.partial):
        config = _partial_config(value, name)
    elif isinstance(value, Mapping) and "_target_" in value:
        config = dict(value)
    else:
        raise ConfigError(_refusal(value, name))
    config = _plain_lists(config)
    if not is_plain(config):
        raise ConfigError(_refusal(value, name))
    config["_partial_"] = True
    return config


def build_factory(config: dict[str, Any] | None) -> Any:
    """The callable a plain factory config stands for (a ``functools.partial``), or None."""
    return None if config is None else instantiate(config)


def _partial_config(factory: functools.partial, name: str) -> dict[str, Any]:
    func = factory.func
    path = f"{getattr(func, '__module__', '')}.{getattr(func, '__qualname__', '')}"
    try:
        importable = "<" not in path and get_object(path) is func
    except Exception:
        importable = False
    if not importable:
        raise ConfigError(_refusal(factory, name))
    config: dict[str, Any] = {"_target_": path, **factory.keywords}
    if factory.args:
        config["_args_"] = list(factory.args)
    return config


def _plain_lists(value: Any) -> Any:
    """Tuples become lists (a config has no tuples; ``betas=(0.9, 0.999)`` works as a list too)."""
    if isinstance(value, (list, tuple)):
        return [_plain_lists(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain_lists(item) for key, item in value.items()}
    return value


def _refusal(value: Any, name: str) -> str:
    return (
        f"{name}={value!r} cannot be stored in a checkpoint (hyper-parameters must be plain so that "
        f"checkpoints load with weights_only=True): pass a config such as "
        f"{{'_target_': 'torch.optim.SGD', 'lr': 0.1}} or functools.partial(<importable function or class>, "
        f"<plain arguments>)"
    )
