"""A backbone as a head and an ordered list of stages: what a fine-tuning strategy freezes or decays.

Every parameter of the network belongs to exactly one part, named by parameter name (relative to
the network). The head is the classifier layer (the same rule the weight loader uses to replace it,
:func:`~litvision.lightning_modules.weights.load.head_name`). The stages run from the input to the
head, in the order of timm's fine-grained groups (``group_matcher(coarse=False)``):

* a network that says so itself: ``finetune_stages()`` returning lists of module names (our
  ImageNet ResNets: the stem, then each residual block, as timm groups its ResNets);
* a timm model (it has ``group_matcher``): timm's own grouping (``timm.models.group_parameters``,
  imported only then; timm stays optional);
* any other network (the CIFAR registry backbones): each parameter-holding child of the network,
  an ``nn.Sequential``'s children taken one by one, in registration order.

Test-time augmentation's wrapper (``TTA``: the network under ``net.``) is looked through.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from torch import nn

from litvision.lightning_modules.backbones.timm_models import timm_stages
from litvision.lightning_modules.backbones.tta import TTA
from litvision.lightning_modules.weights.load import head_name


@dataclass(frozen=True)
class Parts:
    """Parameter names of the head and of each stage (input first); together they cover the network."""

    head: list[str]
    stages: list[list[str]]

    @property
    def backbone(self) -> list[str]:
        return [name for stage in self.stages for name in stage]


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _children(module: nn.Module, prefix: str = "") -> Iterator[str]:
    """Module names of the generic stages: parameter-holding children, a Sequential unrolled once."""
    for name, child in module.named_children():
        if not any(True for _ in child.parameters()):
            continue
        full = f"{prefix}{name}"
        if isinstance(child, nn.Sequential) and not prefix:
            yield from _children(child, full + ".")
        else:
            yield full


def _stage_modules(net: nn.Module, head: str) -> list[list[str]]:
    own: Callable[[], list[list[str]]] | None = getattr(net, "finetune_stages", None)
    if own is not None:
        return own()
    return [[name] for name in _children(net) if not _under(name, head)]


def backbone_parts(net: nn.Module) -> Parts:
    """The head and stages of ``net`` (a registry backbone, one wrapped in TTA, or a timm model)."""
    inner, prefix = (net.net, "net.") if isinstance(net, TTA) else (net, "")
    head = head_name(inner)
    names = [name for name, _ in inner.named_parameters()]
    head_params = [name for name in names if _under(name, head)]
    if hasattr(inner, "group_matcher"):  # a timm model: timm's grouping (the head is its last group)
        stages = [[name for name in group if name not in head_params] for group in timm_stages(inner)]
    else:
        stages = [
            [name for name in names if any(_under(name, module) for module in modules)]
            for modules in _stage_modules(inner, head)
        ]
    stages = [stage for stage in stages if stage]
    placed = set(head_params).union(*map(set, stages)) if stages else set(head_params)
    # parameters no stage names (e.g. one held directly by the network) train with the head, as timm
    # puts what its group matcher leaves out in the last group
    head_params += [name for name in names if name not in placed]
    return Parts(
        head=[prefix + name for name in head_params],
        stages=[[prefix + name for name in stage] for stage in stages],
    )
