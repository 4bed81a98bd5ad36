"""OmegaConf resolvers for arithmetic in configs, e.g. ``lr: ${lv.mul:0.1,${lv.div:${dataset.batch_size},256}}``.

Recipes are stated as rules (linear LR scaling with the batch size, eval resize = crop /
0.875) rather than as numbers someone must recompute when changing one key. Call
:func:`register_resolvers` before Hydra composes/resolves a config (train.py does at import).
"""

from __future__ import annotations

from omegaconf import OmegaConf

from litvision.launch.slurm_resolvers import slurm_gpus_per_node, slurm_tasks_per_node


def _mul(*values: float) -> float:
    result = 1.0
    for value in values:
        result *= float(value)
    return result


def _div(numerator: float, denominator: float) -> float:
    return float(numerator) / float(denominator)


def _round(value: float) -> int:
    return int(round(float(value)))


RESOLVERS = {
    "lv.mul": _mul,
    "lv.div": _div,
    "lv.round": _round,
    # the SLURM request that matches the trainer (conf/hydra/launcher/slurm.yaml)
    "lv.slurm_tasks_per_node": slurm_tasks_per_node,
    "lv.slurm_gpus_per_node": slurm_gpus_per_node,
}


def register_resolvers() -> None:
    """Register the ``lv.*`` resolvers above (idempotent)."""
    for name, fn in RESOLVERS.items():
        OmegaConf.register_new_resolver(name, fn, replace=True)
