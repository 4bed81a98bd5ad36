"""Fit a weight file's tensors into a backbone: the head replaced when the classes differ, everything else exact.

The rule (no silent ``strict=False``): every tensor of the backbone except its head must come from
the file with the same shape, and the file may hold nothing the backbone lacks except its own
head; BatchNorm's ``num_batches_tracked`` counters are optional both ways. A missing,
mis-shaped or extra tensor is a one-line DataError naming the keys. The head (the final linear
layer: ``fc`` for our backbones and timm's ResNets, timm's ``pretrained_cfg['classifier']`` in
general) is loaded when the file's head has the model's shape and (where the file names its
classes) the same classes; otherwise the model keeps its freshly initialised head. One log
line reports what was loaded, what is new and what was ignored.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from litvision.lightning_modules.backbones.tta import TTA
from litvision.lightning_modules.weights.layouts import is_optional
from litvision.lightning_modules.weights.sources import WeightFile, WeightSource, check_source, read_source
from litvision.utils.errors import DataError

log = logging.getLogger("litvision")
SHOWN = 6  # keys named per list in a message


@dataclass
class LoadReport:
    """What :func:`fit_weights` did: keys loaded from the file, kept new (the head), and the file's keys ignored."""

    source: str
    loaded: list[str] = field(default_factory=list)
    new: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    head_reason: str = ""

    def line(self) -> str:
        new = f"new: {_names(self.new)} ({self.head_reason})" if self.new else "new: none"
        ignored = f"ignored: the file's {_names(self.ignored)}" if self.ignored else "ignored: none"
        return f"{self.source}: loaded {len(self.loaded)} tensors; {new}; {ignored}"


def head_name(net: nn.Module) -> str:
    """The module name of ``net``'s classifier head."""
    config = getattr(net, "pretrained_cfg", None) or getattr(net, "default_cfg", None)
    if isinstance(config, Mapping) and isinstance(config.get("classifier"), str):
        return config["classifier"]
    if isinstance(getattr(net, "fc", None), nn.Linear):
        return "fc"
    linears = [name for name, module in net.named_modules() if isinstance(module, nn.Linear)]
    if not linears:
        raise DataError(f"{type(net).__name__} has no linear head to replace")
    return linears[-1]


def _under(key: str, prefix: str) -> bool:
    return key == prefix or key.startswith(prefix + ".")


def fit_weights(
    net: nn.Module,
    weights: WeightFile,
    source: str,
    class_names: Sequence[str] | None = None,
) -> LoadReport:
    """Copy ``weights`` into ``net`` (unwrapping test-time augmentation) by the rule above; return the report."""
    target = net.net if isinstance(net, TTA) else net
    head = head_name(target)
    model_state = target.state_dict()
    file_state = weights.state
    model_head = [key for key in model_state if _under(key, head)]
    file_head = [key for key in file_state if _under(key, head)]
    reason = _head_replacement(model_state, file_state, model_head, file_head, weights.class_names, class_names)

    body = [key for key in model_state if not _under(key, head)]
    missing = [key for key in body if key not in file_state and not is_optional(key)]
    extra = [key for key in file_state if key not in model_state and not _under(key, head) and not is_optional(key)]
    misshaped = [
        f"{key} (file {_shape(file_state[key])}, model {_shape(model_state[key])})"
        for key in body
        if key in file_state and file_state[key].shape != model_state[key].shape
    ]
    if missing or extra or misshaped:
        problems = []
        if missing:
            problems.append(f"missing from the file: {_names(missing)}")
        if misshaped:
            problems.append(f"other shapes: {_names(misshaped)}")
        if extra:
            problems.append(f"not in the model: {_names(extra)}")
        built = weights.architecture or "another architecture"
        raise DataError(
            f"{source} does not fit the backbone {type(target).__name__} ({'; '.join(problems)}): "
            f"is it a weight file for this architecture? (the file says: {built})"
        )

    report = LoadReport(source)
    merged = dict(model_state)
    for key in body:
        if key in file_state:
            merged[key] = file_state[key]
            report.loaded.append(key)
    if reason:
        report.new, report.ignored, report.head_reason = model_head, file_head, reason
    else:
        for key in model_head:
            merged[key] = file_state[key]
            report.loaded.append(key)
    target.load_state_dict(merged, strict=True)
    return report


def _head_replacement(
    model_state: Mapping[str, torch.Tensor],
    file_state: Mapping[str, torch.Tensor],
    model_head: list[str],
    file_head: list[str],
    file_classes: Sequence[str] | None,
    model_classes: Sequence[str] | None,
) -> str:
    """Why the model keeps its own head ("" = load the file's)."""
    if not file_head:
        return "the head: the file has none"
    file_count = _class_count(file_state, file_head)
    model_count = _class_count(model_state, model_head)
    if sorted(file_head) != sorted(model_head) or any(file_state[k].shape != model_state[k].shape for k in model_head):
        return f"the head: {file_count} classes in the file, {model_count} here"
    if file_classes is not None and model_classes is not None and list(file_classes) != list(model_classes):
        return f"the head: the file was trained on other classes ({_names(list(file_classes))})"
    return ""


def _class_count(state: Mapping[str, torch.Tensor], head: list[str]) -> int | str:
    weights = [state[key] for key in head if key.endswith("weight") and state[key].ndim >= 1]
    return int(weights[0].shape[0]) if weights else "?"


def _shape(tensor: torch.Tensor) -> str:
    return "x".join(str(d) for d in tensor.shape) or "scalar"


def _names(keys: list[str]) -> str:
    shown = ", ".join(keys[:SHOWN])
    return shown + (f" and {len(keys) - SHOWN} more" if len(keys) > SHOWN else "")


def load_backbone_weights(
    net: nn.Module,
    source: str | WeightSource,
    class_names: Sequence[str] | None = None,
    architecture: str | None = None,
    progress: bool = True,
) -> LoadReport:
    """Read ``source`` (``model.backbone.weights``) and fit it into ``net``; log and return the report."""
    parsed = source if isinstance(source, WeightSource) else check_source(source, architecture)
    weights = read_source(parsed, progress=progress)
    report = fit_weights(net, weights, parsed.label, class_names)
    log.info(report.line())
    return report
