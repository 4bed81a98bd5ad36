"""``model=timm``: any timm model, with one line saying what to install when timm cannot be imported.

timm is not a litvision dependency (the ``timm`` extra). It imports torchvision when imported
(timm 1.0.31: ``timm.layers`` -> ``torchvision.ops``), so ``pip install timm --no-deps`` leaves a
timm that cannot import. A torchvision built for another torch is worse: PyPI's torchvision wheels
are built against PyPI's CUDA torch, and beside a CPU torch (``2.13.0+cpu``) importing it raises
``RuntimeError: operator torchvision::nms does not exist``, and Lightning imports torchvision
whenever it is installed, so then every command fails before litvision runs (README, "Quick
start": uninstall it, install the matching build). The fix is the torchvision made for the
installed torch.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any, cast

import torch
from torch import nn

from litvision.utils.errors import ConfigError

CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def matching_torchvision(torch_version: str) -> str:
    """The torchvision release made for a torch release: torch 2.N.P <-> torchvision 0.(N+15).P (since 2.0)."""
    public = torch_version.partition("+")[0]
    major, minor, patch = (public.split(".") + ["0", "0"])[:3]
    if major != "2" or not minor.isdigit():
        return "torchvision"
    patch = "".join(ch for ch in patch if ch.isdigit()) or "0"
    return f"torchvision==0.{int(minor) + 15}.{patch}"


def install_hint(torch_version: str | None = None) -> str:
    """The install line for timm that keeps the installed torch."""
    version = torch_version or torch.__version__
    if "+cpu" in version:
        return (
            f"pip install '{matching_torchvision(version)}' --index-url {CPU_INDEX} && pip install timm "
            f"(a CPU torch needs PyTorch's CPU torchvision; `pip install -e \".[timm]\"` would bring PyPI's CUDA one)"
        )
    return 'pip install -e ".[timm]" (or pip install timm)'


def import_timm() -> ModuleType:
    """``import timm``, or a ConfigError naming the install line that fixes it."""
    try:
        import timm
    except ModuleNotFoundError as err:
        missing = err.name or "timm"
        raise ConfigError(f"model=timm needs {missing}, which is not installed: {install_hint()}") from err
    return timm


def create_model(model_name: str, pretrained: bool = False, num_classes: int = 1000, **kwargs: Any) -> nn.Module:
    """``timm.create_model`` (same arguments), imported when the model is built."""
    return import_timm().create_model(model_name, pretrained=pretrained, num_classes=num_classes, **kwargs)


def timm_stages(net: nn.Module) -> list[list[str]]:
    """Parameter names of a timm model's layer groups, input first: timm's ``group_matcher(coarse=False)``
    as ``timm.optim``'s layer decay uses it (the last group holds the head and what no rule matched)."""
    group_parameters = import_timm().models.group_parameters
    matcher = cast(Callable[..., Any], net.group_matcher)  # a timm model's method (nn.Module types it as a tensor)
    groups = group_parameters(net, matcher(coarse=False))
    return [list(groups[key]) for key in sorted(groups)]
