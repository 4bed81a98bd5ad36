"""Export a litvision checkpoint's backbone as a weight file in torchvision's, timm's or litvision's layout.

``export_backbone("best.ckpt", "model.safetensors")`` writes the backbone's tensors (no loss or
metric state) with litvision's metadata (the eval preprocessing the model was trained with, its
class names, its architecture), so ``model.backbone.weights=model.safetensors`` starts a new run
from it with its preprocessing. ``layout="torchvision"``/``"timm"`` writes their key names (for
our ResNets, ``torchvision.models.resnet50().load_state_dict(...)`` / timm's ``resnet50`` load it);
a ``.pth`` target is a plain ``torch.save`` of the state dict. Written atomically.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from litvision.lightning_modules.weights import layouts
from litvision.lightning_modules.weights.sources import (
    META_ARCHITECTURE,
    META_CLASS_NAMES,
    META_LAYOUT,
    META_PREPROCESSING,
    WeightSource,
    _read_checkpoint,
)
from litvision.utils.atomic_write import write_atomic
from litvision.utils.checkpoint_io import load_checkpoint
from litvision.utils.errors import ConfigError


def export_backbone(ckpt_path: str | Path, out: str | Path, layout: str = "torchvision") -> Path:
    """Write the backbone of ``ckpt_path`` to ``out`` (.safetensors or .pth) in ``layout``; returns ``out``."""
    if layout not in layouts.LAYOUTS:
        raise ConfigError(f"layout={layout!r}: choose one of {list(layouts.LAYOUTS)}")
    out = Path(out)
    source = WeightSource(str(ckpt_path), "ckpt", path=Path(ckpt_path))
    weights = _read_checkpoint(source, load_checkpoint(ckpt_path, key="ckpt_path"))
    state = {key: value.detach().cpu().contiguous() for key, value in weights.state.items()}
    if layout != "litvision":
        state = layouts.from_backbone(state, layout)
    if out.suffix == ".safetensors":
        from safetensors.torch import save

        metadata = {"format": "pt", META_LAYOUT: layout}
        if weights.preprocessing is not None:
            metadata[META_PREPROCESSING] = json.dumps(weights.preprocessing.to_dict())
        if weights.class_names is not None:
            metadata[META_CLASS_NAMES] = json.dumps(weights.class_names)
        if weights.architecture is not None:
            metadata[META_ARCHITECTURE] = weights.architecture
        data = save(state, metadata=metadata)
        write_atomic(out, lambda handle: handle.write(data))
    elif out.suffix in (".pth", ".pt"):
        write_atomic(out, lambda handle: torch.save(state, handle))
    else:
        raise ConfigError(f"{out}: export to a .safetensors (with litvision's metadata) or a .pth file")
    return out
