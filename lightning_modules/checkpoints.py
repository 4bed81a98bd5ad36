"""Load checkpoints without running code from them: ``torch.load(weights_only=True)`` always.

A checkpoint someone shared must not be able to run code when ``eval.py`` (or a resume, or
``predict.py``) opens it, which is why PyTorch made ``weights_only=True`` its default. Our
checkpoints hold tensors and plain hyper-parameters only (see
:mod:`litvision.lightning_modules.plain_config`), so they load that way. A checkpoint that
carries pickled Python objects (e.g. one written before litvision stored plain
hyper-parameters) is refused with one line that says how to convert a trusted one.

* :func:`load_checkpoint` (from :mod:`litvision.utils.checkpoint_io`, which the CheckpointIO plugin
  calls too): path -> checkpoint dict (every load goes through it: eval.py,
  resume and the test of the best checkpoint via ``AtomicCheckpointIO``, predict.py);
* :func:`load_classifier`: path -> :class:`ImageClassifier` with the checkpoint's weights;
* :func:`convert_trusted_checkpoint`: rewrite an old checkpoint in the plain form (also read
  without running its code).
"""

from __future__ import annotations

import builtins
import collections
import functools
import inspect
import io
import pickle
import re
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from litvision.utils.checkpoint_io import (
    converted_name,
    first_line,
    load_checkpoint,
)
from litvision.utils.errors import DataError

if TYPE_CHECKING:
    import lightning as L

# ... and what its unpickler raised (the line after torch's generic advice)
UNPICKLER_ERROR = re.compile(r"WeightsUnpickler error:\s*(.+)")


def load_classifier(
    path: str | Path,
    map_location: Any = "cpu",
    model_class: type[L.LightningModule] | None = None,
    *,
    trust_checkpoint: bool = False,
    trust_checkpoint_targets: Iterable[str] = (),
    overrides: Mapping[str, Any] | None = None,
    strict: bool = True,
):
    """The classifier stored in ``path`` (architecture and classes from its hyper-parameters).

    Before anything is built, the hyper-parameters are checked against what litvision builds
    from a file (:mod:`~litvision.lightning_modules.checkpoint_targets`): a ``_target_`` off
    the allowlist is refused in one line unless the caller trusts it
    (``trust_checkpoint_targets=[...]``) or the whole file (``trust_checkpoint=True``).
    ``overrides``: hyper-parameters the caller sets instead of the file's (not checked: they
    are the caller's own).
    """
    from litvision.lightning_modules.checkpoint_targets import (
        CheckpointTrust,
        check_checkpoint_targets,
        with_moved_targets,
    )

    if model_class is None:
        from litvision.lightning_modules.classifier import ImageClassifier

        model_class = ImageClassifier
    trust = CheckpointTrust.of(trust_checkpoint, trust_checkpoint_targets)
    checkpoint = load_checkpoint(path, map_location)
    if not isinstance(checkpoint.get("state_dict"), dict) or not isinstance(checkpoint.get("hyper_parameters"), dict):
        raise DataError(f"ckpt_path={path} is not a litvision model checkpoint (no state_dict/hyper_parameters)")
    overrides = dict(overrides or {})
    from_file = {
        key: with_moved_targets(value) for key, value in checkpoint["hyper_parameters"].items() if key not in overrides
    }
    _check_known_keys(path, from_file, model_class)
    check_checkpoint_targets(from_file, f"ckpt_path={path}", trust)
    from litvision.lightning_modules.classifier import building_from_checkpoint

    with building_from_checkpoint():  # the weights are the checkpoint's: backbone.weights is not loaded
        model = model_class(**from_file, **overrides)
    model.on_load_checkpoint(checkpoint)  # e.g. renames torch.compile'd keys
    try:
        model.load_state_dict(checkpoint["state_dict"], strict=strict)
    except RuntimeError as err:  # "Error(s) in loading state_dict": the weights are not the model's
        raise DataError(
            f"ckpt_path={path}: its weights do not fit the model its hyper-parameters describe "
            f"({_state_dict_difference(err)})"
        ) from err
    return model


def _check_known_keys(path: str | Path, hparams: Mapping[str, Any], model_class: type[L.LightningModule]) -> None:
    """Hyper-parameters the constructor does not take (e.g. Lightning's ``_instantiator``) are refused."""
    parameters = inspect.signature(model_class.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    unknown = sorted(str(key) for key in hparams if key not in parameters or key == "self")
    if unknown:
        raise DataError(
            f"ckpt_path={path}: hyper-parameters {unknown} are not arguments of {model_class.__name__}: "
            "not a litvision model checkpoint (or one of a newer version)"
        )


def _state_dict_difference(err: BaseException) -> str:
    """The first detail of torch's long load_state_dict message (which keys or shapes differ), shortened."""
    details = [line.strip() for line in str(err).splitlines()[1:] if line.strip()]
    detail = details[0] if details else "see HYDRA_FULL_ERROR=1"
    return detail if len(detail) <= 200 else detail[:200] + "..."


def convert_trusted_checkpoint(source: str | Path, target: str | Path | None = None) -> Path:
    """Rewrite a checkpoint whose hyper-parameters are pickled factories as a plain one.

    The source is read with ``weights_only=True`` too (:func:`_load_without_code`): the
    functions and classes it names are read as names, never imported or called, so
    converting a file runs none of its code. Factories (``functools.partial``, OmegaConf
    configs) become plain configs (``_target_`` = the name); the result is checked to load
    with ``weights_only=True`` before it is written (atomically) to ``target`` (default:
    ``<name>.plain.ckpt``). Convert only checkpoints you trust all the same: the
    ``_target_`` names it carries are what the model builds when it is loaded.
    """
    from litvision.lightning_modules.plain_config import factory_config, is_plain
    from litvision.utils.checkpoint_io import atomic_torch_save

    source = Path(source)
    target = Path(target) if target is not None else Path(converted_name(source))
    checkpoint = _load_without_code(source)
    hparams = dict(checkpoint.get("hyper_parameters", {}))
    for name in ("backbone", "optimizer", "scheduler", "loss"):
        hparams[name] = factory_config(_named_factory(hparams.get(name)), name)
    hparams = {key: _plain(value) for key, value in hparams.items()}
    unconvertible = sorted(key for key, value in hparams.items() if not is_plain(value))
    if unconvertible:
        raise DataError(f"{source}: hyper-parameters {unconvertible} are not plain and cannot be converted")
    checkpoint["hyper_parameters"] = hparams
    checkpoint.pop("hparams_type", None)  # OmegaConf's container class: the hyper-parameters are a dict now
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    buffer.seek(0)
    torch.load(buffer, weights_only=True)  # what the converted file must pass; raises otherwise
    atomic_torch_save(checkpoint, target)
    return target


class NamedCode:
    """What a function or class named in an old checkpoint is read as: its dotted ``path``.

    Subclassed once per name (:func:`_named_code`). Calling it (a pickle that runs code while
    loading, not one that only names a factory) is refused.
    """

    path = ""

    def __new__(cls, *args: Any, **kwargs: Any):
        raise pickle.UnpicklingError(f"it calls {cls.path} while loading (code, not data)")


# the data types old hyper-parameters were pickled with: the real ones are used
DATA_BUILTINS = ("dict", "list", "tuple", "set", "frozenset", "int", "float", "complex", "str", "bytes", "bool")
DATA_GLOBALS = {
    "functools.partial": functools.partial,
    "collections.defaultdict": collections.defaultdict,
    "collections.OrderedDict": collections.OrderedDict,
    "typing.Any": typing.Any,
    **{f"builtins.{name}": getattr(builtins, name) for name in DATA_BUILTINS},
}


def _load_without_code(source: Path) -> dict[str, Any]:
    """``torch.load(weights_only=True)`` of a checkpoint that names code: OmegaConf's container
    classes and plain data types are allowed as themselves, every other name is a :class:`NamedCode`."""
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(source)
        allowed: list[Any] = [(_data_global(name) or _named_code(name), name) for name in names]
        with torch.serialization.safe_globals(allowed):
            checkpoint = torch.load(source, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = UNPICKLER_ERROR.search(str(err))
        raise DataError(f"{source} cannot be converted: {found.group(1) if found else first_line(err)}") from err
    except (RuntimeError, EOFError, OSError) as err:
        raise DataError(
            f"{source} is not a readable checkpoint (truncated or not a torch file): {first_line(err)}"
        ) from err
    if not isinstance(checkpoint, dict):
        raise DataError(f"{source} holds a {type(checkpoint).__name__}, not a Lightning checkpoint")
    return checkpoint


def _data_global(name: str) -> Any:
    """The real object for a data type (OmegaConf classes only, never its functions), else None."""
    if name in DATA_GLOBALS:
        return DATA_GLOBALS[name]
    if name.split(".")[0] == "omegaconf":
        from hydra.utils import get_object

        found = get_object(name)
        return found if isinstance(found, type) else None
    return None


def _named_code(path: str) -> type[NamedCode]:
    module, _, qualname = path.rpartition(".")
    return type(qualname, (NamedCode,), {"path": path, "__module__": module, "__qualname__": qualname})


def _named_factory(value: Any) -> Any:
    """``functools.partial(<NamedCode>, ...)`` as the factory config it names; other values as they are."""
    if isinstance(value, functools.partial) and isinstance(value.func, type) and issubclass(value.func, NamedCode):
        config: dict[str, Any] = {"_target_": value.func.path, **value.keywords}
        if value.args:
            config["_args_"] = list(value.args)
        return config
    return value


def _plain(value: Any) -> Any:
    """OmegaConf containers and numpy scalars/arrays as plain Python values."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    if hasattr(value, "tolist"):  # numpy/torch scalars and arrays
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value
