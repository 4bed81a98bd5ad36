"""The run's seed: ``seed=null`` draws one, logs it and records it, so every run is reproducible.

The seed feeds ``seed_everything`` (model init, augmentation workers) and the training
sampler (``dataset.seed: ${seed}``), whose stream must be the same on every DDP rank. Rank 0
draws; the ranks Lightning starts itself inherit the drawn value through ``PL_GLOBAL_SEED``
(set by ``seed_everything`` in rank 0's environment before it launches them). Ranks started
by SLURM or torchrun cannot agree on a drawn seed, so there ``seed=null`` is refused.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from omegaconf import OmegaConf

from litvision.utils.atomic_write import write_text_atomic
from litvision.utils.distributed import global_rank
from litvision.utils.errors import ConfigError

log = logging.getLogger("litvision")
MAX_SEED = 2**32 - 1  # numpy's bound, checked by seed_everything
SEED_ENV = "PL_GLOBAL_SEED"  # where Lightning's seed_everything leaves the seed for child processes


def settled_seed(seed: object, saved_config: Path | None = None) -> int:
    """The run's seed: ``seed`` checked, or, when it is null, drawn (or inherited) and recorded.

    ``saved_config``: the run's ``.hydra/config.yaml``; a drawn seed is written into it. The caller
    (:func:`litvision.tasks.build.settle_config`) puts the value into the run's config and seeds.
    """
    if seed is None:
        seed = draw_or_inherit_seed(global_rank(), os.environ)
        if saved_config is not None and saved_config.is_file():
            record_seed(saved_config, seed)
        log.info(
            "seed=null: drew seed=%d (in %s; rerun with seed=%d to reproduce this run)",
            seed,
            saved_config or "the logged config",
            seed,
        )
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"seed={seed!r} must be an integer in [0, {MAX_SEED}] or null (drawn at random)")
    return seed


def draw_or_inherit_seed(rank: int, environ: Mapping[str, str]) -> int:
    """A fresh seed on rank 0; on the other ranks the one rank 0 drew (``PL_GLOBAL_SEED``)."""
    if rank > 0:
        if SEED_ENV in environ:
            return int(environ[SEED_ENV])
        raise ConfigError(
            "seed=null with processes started by SLURM/torchrun: the ranks cannot agree on a drawn seed; pass seed=<int>"
        )
    world = max(int(environ.get("WORLD_SIZE", "1") or 1), int(environ.get("SLURM_NTASKS", "1") or 1))
    if world > 1:
        raise ConfigError(
            f"seed=null with {world} processes started by SLURM/torchrun: the ranks cannot agree on a drawn seed; "
            "pass seed=<int>"
        )
    return secrets.randbelow(2**31)


def record_seed(saved_config: Path, seed: int) -> None:
    """Write the drawn seed into the run's saved config (Hydra wrote it before the job ran)."""
    config = OmegaConf.load(saved_config)
    config.seed = seed
    write_text_atomic(saved_config, OmegaConf.to_yaml(config))
