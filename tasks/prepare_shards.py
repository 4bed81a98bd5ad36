"""The prepare-shards task: write a file dataset's splits as WebDataset shards (``prepare_shards.py``)."""

from __future__ import annotations

import logging
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig

from litvision.utils.cpu import usable_cpus
from litvision.utils.errors import ConfigError
from litvision.utils.optional import require

log = logging.getLogger("litvision")


def resolve_workers(workers: int | str | None) -> int:
    """``auto``: every CPU core this process may use."""
    if workers in ("auto", None):
        return usable_cpus()
    if not isinstance(workers, int) or workers < 0:
        raise ConfigError(f"workers must be an int >= 0 or 'auto', got {workers!r}")
    return workers


def prepare_shards(cfg: DictConfig) -> dict[str, Any]:
    """Instantiate ``cfg.dataset`` (a file dataset) and write its splits into ``cfg.out``."""
    require("webdataset", "shards", "prepare_shards.py")
    from litvision.datamodules.class_folder import ClassFolderDataModule
    from litvision.datamodules.shards.prepare import prepare

    # the images are copied as bytes: no transform, sampler or loader is built
    datamodule = instantiate(cfg.dataset, train_transform=None, eval_transform=None, normalize=None, sampler=None)
    if not isinstance(datamodule, ClassFolderDataModule):
        raise ConfigError(
            f"prepare_shards writes file datasets (dataset=imagenet, dataset=class_folder); {cfg.dataset._target_} "
            "is not one"
        )
    return prepare(
        datamodule,
        cfg.out,
        samples_per_shard=cfg.samples_per_shard,
        workers=resolve_workers(cfg.workers),
        verify=cfg.verify,
        shuffle_seed=cfg.shuffle_seed,
    )
