"""Resolvers that turn the trainer config into a SLURM request (conf/hydra/launcher/slurm.yaml).

Lightning's SLURM support expects one task per device on every node, so the request is a
function of ``trainer.devices``, ``trainer.num_nodes`` and ``trainer.accelerator``: the
launcher config states that rule once instead of every trainer preset repeating it.
"""

from __future__ import annotations

from typing import Any

from omegaconf import ListConfig

from litvision.utils.errors import ConfigError

GPU_ACCELERATORS = ("gpu", "cuda", "auto")  # auto picks the GPUs SLURM gives the job


def slurm_tasks_per_node(devices: Any) -> int:
    """One SLURM task per device: ``trainer.devices`` as a positive count (a list counts its ids)."""
    if isinstance(devices, (list, tuple, ListConfig)):  # device ids: [0, 1]
        return len(devices)
    if isinstance(devices, str) and "," in devices:  # device ids as Lightning's string form: "0,1"
        return len([d for d in devices.split(",") if d.strip()])
    try:
        count = int(devices)
    except (TypeError, ValueError):
        count = 0
    if count < 1:
        raise ConfigError(
            f"hydra/launcher=slurm asks SLURM for one task per device and needs trainer.devices as a number "
            f"per node (got {devices!r}): add e.g. trainer.devices=8"
        )
    return count


def slurm_gpus_per_node(accelerator: Any, devices: Any) -> int | None:
    """GPUs per node for a GPU trainer (one per task); none for CPU trainers (trainer=cpu, ddp_sim)."""
    if str(accelerator).lower() not in GPU_ACCELERATORS:
        return None
    return slurm_tasks_per_node(devices)
