"""The ``finetune=`` strategies: which parameters train in which epoch, their LR scale, and BatchNorm's mode.

A strategy is built from config (``_target_``, conf/finetune/) and attached to the classifier's
network once it is built (and its pretrained weights loaded). It decides three things:

* **the parameter groups** the optimizer is built with, each with an ``lr_scale`` on the base LR
  (``optimizer.lr``) and split further into decay / no-decay by the classifier. Every parameter that
  trains in *some* epoch is in a group from the start, so the LR schedule (warm-up, cosine, one-cycle:
  per-group lists built once in ``configure_optimizers``), the no-decay split and a resume's optimizer
  state cover the backbone before and after an unfreeze alike;
* **what trains in each epoch** (``requires_grad``): a frozen parameter gets no gradient, so the
  optimizer skips it (no step, no weight decay, no momentum) and autograd does no backward pass
  through a frozen part whose inputs need none. A parameter the network froze itself (airbench's
  whitening weights, set from data) stays frozen under every strategy and phase;
* **BatchNorm in the backbone** (``bn``, everything but the head):

  ``train``
      as in training: batch statistics, running statistics updated, scale/shift learnt, even while
      the rest of the backbone is frozen (Lightning's ``BackboneFinetuning`` and fastai's default).
      The backward pass then runs through the frozen part too.
  ``freeze_stats``
      eval mode: the pretrained running statistics normalise and are never updated; scale/shift
      train when their part trains.
  ``freeze``
      eval mode and scale/shift fixed: a fixed affine map, like timm's ``FrozenBatchNorm2d``.

  The mode holds for the whole run: through every ``.train()`` call (the classifier re-applies it,
  :meth:`Strategy.hold_bn`), after an unfreeze (Keras' advice for fine-tuning on small data: keep
  the pretrained statistics) and across a resume.

Why not Lightning's ``BackboneFinetuning``/``BaseFinetuning`` callbacks: (1) they freeze in
``setup``, before ``configure_model`` builds our network and loads its weights; (2) the unfreeze
adds the backbone as a *new* optimizer group, which the LR scheduler built in ``configure_optimizers``
never schedules (``LambdaLR``/``OneCycleLR`` keep one entry per original group: no warm-up or
cosine for the backbone) and which puts norms and biases back under weight decay; (3) their
``train_bn=False`` sets ``track_running_stats=False``, so frozen BatchNorm normalises with batch
statistics in training (neither frozen nor training statistics), and nothing keeps BatchNorm in
eval mode through Lightning's ``.train()`` calls. So the phase is a function of the epoch, applied
by the classifier's ``on_train_epoch_start`` (also the first hook of a resumed epoch) and stored in
the checkpoint; the optimizer's groups never change, so their LRs come back with its state.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from litvision.lightning_modules.finetune.parts import Parts, backbone_parts
from litvision.utils.errors import ConfigError

BN_MODES = ("train", "freeze_stats", "freeze")


@dataclass(frozen=True)
class Group:
    """Parameter names that share an LR scale (``lr = optimizer.lr * lr_scale``)."""

    name: str
    params: list[str]
    lr_scale: float = 1.0


class Strategy:
    """Base class, and ``finetune=full``: everything trains from the first epoch at the base LR.

    Subclasses set :attr:`name`, :meth:`frozen_epochs` (how many epochs the backbone stays frozen)
    and :meth:`groups`. ``bn``: what the backbone's BatchNorm layers do (module docstring).
    """

    name = "full"

    def __init__(self, bn: str = "train") -> None:
        if bn not in BN_MODES:
            raise ConfigError(f"finetune.bn={bn}: choose one of {'|'.join(BN_MODES)}")
        self.bn = bn
        self.parts: Parts | None = None
        self.bn_modules: list[nn.Module] = []
        self.bn_params: set[str] = set()
        self.frozen: bool | None = None  # the backbone's phase now (None: not applied yet)
        self.fixed: set[str] = set()  # parameters the network froze itself (attach)

    # ---- what a subclass says ------------------------------------------------------
    def frozen_epochs(self) -> float:
        """Epochs the backbone (all but the head) is frozen for: 0 never, ``math.inf`` always."""
        return 0

    def groups(self, parts: Parts) -> list[Group]:
        return [Group("all", [*parts.backbone, *parts.head])]

    # ---- applied to a network -------------------------------------------------------
    def attach(self, net: nn.Module) -> None:
        """Find ``net``'s head, stages and backbone BatchNorm layers; freeze what the first epoch freezes."""
        if self.parts is None:  # the network's own frozen parameters (airbench's whitening): never ours to train
            self.fixed = {name for name, param in net.named_parameters() if not param.requires_grad}
        self.parts = parts = self.find_parts(net)
        head = set(parts.head)
        self.bn_modules, self.bn_params = [], set()
        for module_name, module in net.named_modules():
            if isinstance(module, _BatchNorm):
                names = {f"{module_name}.{name}" for name, _ in module.named_parameters()}
                if not names & head:
                    self.bn_modules.append(module)
                    self.bn_params |= names
        self.frozen = None
        self.apply(net, 0)

    def find_parts(self, net: nn.Module) -> Parts:
        """``net``'s head and stages; ``finetune=full`` with ``bn=train`` (the default) needs neither, so a
        user's own network (``model.backbone._target_=...``) trains as it is, linear head or not."""
        if type(self) in (Strategy, Full) and self.bn == "train":
            return Parts(head=[name for name, _ in net.named_parameters()], stages=[])
        return backbone_parts(net)

    def backbone_frozen(self, epoch: int) -> bool:
        return epoch < self.frozen_epochs()

    def trains(self, name: str, frozen: bool) -> bool:
        """Does parameter ``name`` train while the backbone is (not) ``frozen``?"""
        parts = self._parts()
        if name in self.fixed:
            return False
        if name not in self.bn_params:
            return name in parts.head or not frozen
        return self.bn == "train" or (self.bn == "freeze_stats" and not frozen)

    def apply(self, net: nn.Module, epoch: int, frozen: bool | None = None) -> bool:
        """Set ``requires_grad`` for ``epoch``'s phase (or the given one); True when the phase changed."""
        frozen = self.backbone_frozen(epoch) if frozen is None else frozen
        changed = frozen != self.frozen
        for name, param in net.named_parameters():
            param.requires_grad_(self.trains(name, frozen))
        self.frozen = frozen
        self.hold_bn(net)
        return changed

    def hold_bn(self, net: nn.Module) -> None:
        """BatchNorm of the backbone in eval mode for ``bn=freeze_stats|freeze`` (whenever ``net`` trains)."""
        if self.bn != "train" and net.training:
            for module in self.bn_modules:
                module.eval()

    def param_groups(self, net: nn.Module) -> list[dict[str, Any]]:
        """``{"params", "name", "lr_scale"}`` per group, holding every parameter that trains in some epoch."""
        params = dict(net.named_parameters())
        phases = {True, False} if 0 < self.frozen_epochs() < math.inf else {self.backbone_frozen(0)}
        out = []
        for group in self.groups(self._parts()):
            names = [name for name in group.params if any(self.trains(name, frozen) for frozen in phases)]
            if names:
                out.append({"params": [params[name] for name in names], "name": group.name, "lr_scale": group.lr_scale})
        return out

    def describe(self, net: nn.Module) -> str:
        """One log line: the phase and how many parameters train in it."""
        total = sum(p.numel() for p in net.parameters())
        trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
        phase = "backbone frozen" if self.frozen else "everything trains"
        return f"finetune={self.name} (bn={self.bn}): {phase}, {trainable:,} of {total:,} parameters trainable"

    def trainable_count(self, net: nn.Module) -> int:
        return sum(p.numel() for p in net.parameters() if p.requires_grad)

    # ---- checkpoint -----------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"name": self.name, "frozen": self.frozen}

    def load_state_dict(self, net: nn.Module, state: Mapping[str, Any]) -> None:
        """Restore the checkpoint's phase (a resume: before the optimizer state is loaded)."""
        if state.get("name") == self.name and isinstance(state.get("frozen"), bool):
            self.apply(net, 0, frozen=state["frozen"])

    def _parts(self) -> Parts:
        if self.parts is None:
            raise RuntimeError(f"finetune={self.name}: attach(net) first")
        return self.parts


class Full(Strategy):
    """Everything trains from the first epoch at the base LR (the default; what training from scratch does)."""


class LinearProbe(Strategy):
    """Only the head trains; the backbone stays frozen (default ``bn=freeze``: features in eval mode).

    With ``bn=train`` BatchNorm's scale/shift train too (and the backward pass runs through the backbone).
    """

    name = "linear_probe"

    def __init__(self, bn: str = "freeze") -> None:
        super().__init__(bn)

    def frozen_epochs(self) -> float:
        return math.inf

    def groups(self, parts: Parts) -> list[Group]:
        return [Group("head", parts.head), Group("backbone", parts.backbone)]


class FreezeUnfreeze(Strategy):
    """The head alone for ``unfreeze_at_epoch`` epochs, then everything, the backbone at
    ``backbone_lr_ratio`` x the head's LR (fastai's ``fine_tune``: freeze epochs, then discriminative LRs)."""

    name = "freeze_unfreeze"

    def __init__(self, unfreeze_at_epoch: int = 1, backbone_lr_ratio: float = 0.1, bn: str = "freeze_stats") -> None:
        super().__init__(bn)
        if not isinstance(unfreeze_at_epoch, int) or unfreeze_at_epoch < 0:
            raise ConfigError(f"finetune.unfreeze_at_epoch={unfreeze_at_epoch}: must be a whole number >= 0")
        if not backbone_lr_ratio > 0:
            raise ConfigError(f"finetune.backbone_lr_ratio={backbone_lr_ratio}: must be > 0, e.g. 0.1")
        self.unfreeze_at_epoch = unfreeze_at_epoch
        self.backbone_lr_ratio = float(backbone_lr_ratio)

    def frozen_epochs(self) -> float:
        return self.unfreeze_at_epoch

    def groups(self, parts: Parts) -> list[Group]:
        return [Group("head", parts.head), Group("backbone", parts.backbone, self.backbone_lr_ratio)]


class LayerDecay(Strategy):
    """Layer-wise LR decay, timm's semantics (``--layer-decay``): the head at the base LR, each earlier
    stage ``layer_decay`` x the LR of the one after it (stage i of n: ``layer_decay ** (n - i)``)."""

    name = "layer_decay"

    def __init__(self, layer_decay: float = 0.75, bn: str = "train") -> None:
        super().__init__(bn)
        if not 0 < layer_decay <= 1:
            raise ConfigError(f"finetune.layer_decay={layer_decay}: must be in (0, 1], e.g. 0.75")
        self.layer_decay = float(layer_decay)

    def groups(self, parts: Parts) -> list[Group]:
        count = len(parts.stages)
        stages = [Group(f"stage{i}", names, self.layer_decay ** (count - i)) for i, names in enumerate(parts.stages)]
        return [*stages, Group("head", parts.head)]
