"""Fine-tuning strategies (``finetune=``): what trains, at which LR, and what BatchNorm does in the backbone."""

from litvision.lightning_modules.finetune.parts import Parts, backbone_parts
from litvision.lightning_modules.finetune.strategies import (
    BN_MODES,
    FreezeUnfreeze,
    Full,
    LayerDecay,
    LinearProbe,
    Strategy,
)

__all__ = [
    "BN_MODES",
    "FreezeUnfreeze",
    "Full",
    "LayerDecay",
    "LinearProbe",
    "Parts",
    "Strategy",
    "backbone_parts",
]
