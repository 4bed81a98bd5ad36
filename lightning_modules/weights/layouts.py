"""Key layouts of weight files, mapped to the backbone's own parameter names and back (for export).

Our ImageNet ResNets (``backbones/resnet.py``) are torchvision's layer for layer, and timm's
``resnet18``/``resnet50`` (default stem) kept torchvision's module names, so for these the
parameter names coincide: ``conv1.weight``, ``layer2.0.downsample.0.weight``, ``fc.bias``. What
differs is around them:

* a litvision checkpoint holds the classifier's state: backbone keys under ``net.`` (and
  ``net.net.`` when the backbone is wrapped for test-time augmentation), ``._orig_mod.`` inside
  them when it was saved from a ``torch.compile``'d backbone, plus the loss's and metrics' state;
* files saved from a ``DistributedDataParallel`` model have every key under ``module.``;
* published files may lack BatchNorm's ``num_batches_tracked`` counters (torchvision's V1 files
  predate them; torch fills them in on load), which are therefore optional both ways.

A layout whose names differ for some architecture adds ``(pattern, replacement)`` pairs in
:data:`RENAMES` (theirs -> ours, regular expressions on the key); export applies the inverse.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

LAYOUTS = ("litvision", "torchvision", "timm")
# (their key pattern, our key) per layout; none for the ResNets (see above)
RENAMES: dict[str, tuple[tuple[str, str], ...]] = {"torchvision": (), "timm": ()}
OPTIONAL_SUFFIXES = (".num_batches_tracked",)
COMPILED = "_orig_mod."
DDP_PREFIX = "module."


def is_optional(key: str) -> bool:
    return key.endswith(OPTIONAL_SUFFIXES)


def _strip_common_prefix(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    if state and all(key.startswith(prefix) for key in state):
        return {key[len(prefix) :]: value for key, value in state.items()}
    return dict(state)


def _uncompiled(key: str) -> str:
    return key.replace("." + COMPILED, ".").removeprefix(COMPILED)


def classifier_to_backbone(state: Mapping[str, torch.Tensor], tta: bool = False) -> dict[str, torch.Tensor]:
    """A litvision checkpoint's ``state_dict`` -> the backbone's own keys (the ``net.`` part only)."""
    backbone = {}
    for key, value in state.items():
        key = _uncompiled(key)
        if not key.startswith("net."):
            continue  # the loss's buffers, metrics
        key = key[len("net.") :]
        if tta:
            key = key.removeprefix("net.")
        backbone[_uncompiled(key)] = value
    return backbone


def to_backbone(state: Mapping[str, torch.Tensor], layout: str) -> dict[str, torch.Tensor]:
    """A torchvision/timm state dict -> our backbone's keys."""
    state = _strip_common_prefix(state, DDP_PREFIX)
    renames = [(re.compile(pattern), ours) for pattern, ours in RENAMES.get(layout, ())]
    mapped = {}
    for key, value in state.items():
        for pattern, ours in renames:
            key = pattern.sub(ours, key)
        mapped[_uncompiled(key)] = value
    return mapped


def from_backbone(state: Mapping[str, torch.Tensor], layout: str) -> dict[str, torch.Tensor]:
    """Our backbone's keys -> ``layout`` (``litvision``: the classifier's ``net.`` keys)."""
    if layout == "litvision":
        return {f"net.{key}": value for key, value in state.items()}
    renames = [(re.compile(re.escape(ours)), _literal(pattern)) for pattern, ours in RENAMES.get(layout, ())]
    mapped = {}
    for key, value in state.items():
        for ours, theirs in renames:
            key = ours.sub(theirs, key)
        mapped[key] = value
    return mapped


def _literal(pattern: str) -> str:
    """The text a rename pattern matches (patterns are plain names with escaped dots)."""
    return pattern.replace("\\.", ".").lstrip("^").rstrip("$")
