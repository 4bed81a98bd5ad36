"""OmegaConf resolvers for arithmetic in configs, e.g. ``lr: ${lv.mul:0.1,${lv.div:${dataset.batch_size},256}}``.

Recipes are stated as rules (linear LR scaling with the batch size, eval resize = crop /
0.875) rather than as numbers someone must recompute when changing one key. Call
:func:`register_resolvers` before Hydra composes/resolves a config (train.py does at import).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

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


def _launch_dir() -> str:
    """The directory the command was started in: ``hydra.runtime.cwd`` inside a job.

    A sweeper resolves ``hydra.sweep.dir`` before any job exists, when ``${hydra:...}`` fails
    ("HydraConfig was not set"); Hydra never changes directory before a job (and ours keep
    ``hydra.job.chdir=false``), so the current directory is the same one there.
    """
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get().runtime.cwd if HydraConfig.initialized() else os.getcwd()


def _app_config_groups() -> str:
    """``--help``'s group list (Hydra's ``$APP_CONFIG_GROUPS``) without the shared bases (``_base``,
    ``_image_files``, ``_classifier``: files other options build on, not options to pick).

    Read from the running app's config loader, so groups from ``--config-dir`` are listed too;
    outside an app (nothing to ask) it leaves Hydra's own placeholder in place.
    """
    from hydra.core.global_hydra import GlobalHydra

    if not GlobalHydra.instance().is_initialized():
        return "$APP_CONFIG_GROUPS"
    hydra = GlobalHydra.instance().hydra
    assert hydra is not None  # set whenever GlobalHydra is initialized
    lines = []
    for group in sorted(g for g in hydra.list_all_config_groups() if g != "hydra" and not g.startswith("hydra/")):
        options = sorted(o for o in hydra.config_loader.get_group_options(group) if not o.startswith("_"))
        if options:
            lines.append(f"{group}: {', '.join(options)}")
    return "\n".join(lines)


RESOLVERS: dict[str, Callable[..., Any]] = {
    "lv.mul": _mul,
    "lv.div": _div,
    "lv.round": _round,
    # conf/paths/default.yaml: paths.root_dir, also where a sweeper resolves hydra.sweep.dir
    "lv.launch_dir": _launch_dir,
    # conf/hydra/default.yaml help.template: --help lists the options a user can pick
    "lv.app_config_groups": _app_config_groups,
    # the SLURM request that matches the trainer (conf/hydra/launcher/slurm.yaml)
    "lv.slurm_tasks_per_node": slurm_tasks_per_node,
    "lv.slurm_gpus_per_node": slurm_gpus_per_node,
}


def register_resolvers() -> None:
    """Register the ``lv.*`` resolvers above (idempotent)."""
    for name, fn in RESOLVERS.items():
        OmegaConf.register_new_resolver(name, fn, replace=True)
