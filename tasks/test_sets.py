"""Extra test sets of a run (``test_sets=[cifar10_1,cifar10_c]``): each tested after the main test, reported under its name.

Each entry of ``cfg.test_sets`` is a dataset config (conf/test_sets/<name>.yaml includes
conf/dataset/<name>.yaml), instantiated here and tested with the same Trainer and checkpoint as
the main test split; the classifier logs it as ``<name>/acc_top1``, ``<name>/recall/<class>``, ...
(same metrics, same DDP-exact sync), and ``metrics.json`` gets them beside ``test/*``.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from litvision.utils.errors import ConfigError

log = logging.getLogger("litvision")


def test_set_configs(cfg: DictConfig) -> dict[str, DictConfig]:
    """``{name: dataset config}`` of ``cfg.test_sets`` (writable copies), in the order given."""
    # a writable twin of the whole config: the sets' interpolations (${augmentation.eval}, ...) resolve against it
    source = copy.deepcopy(cfg)
    OmegaConf.set_readonly(source, False)
    sets = source.get("test_sets")
    if not sets:
        return {}
    if not isinstance(sets, DictConfig):
        raise ConfigError(f"test_sets={sets!r}: name the sets as config options, e.g. test_sets=[cifar10_1,cifar10_c]")
    configs = {}
    for key, node in sets.items():
        name = str(key)
        if not isinstance(node, DictConfig) or "_target_" not in node:
            raise ConfigError(f"test_sets.{name}: not a dataset config (options: conf/test_sets/*.yaml)")
        configs[name] = node
    return configs


def build_test_sets(cfg: DictConfig, data_overrides: dict[str, Any] | None = None) -> dict[str, L.LightningDataModule]:
    """The extra test sets' DataModules, built (and so checked: version, files) before anything runs."""
    sets = {name: instantiate(node, **(data_overrides or {})) for name, node in test_set_configs(cfg).items()}
    for datamodule in sets.values():
        if hasattr(datamodule, "check"):
            datamodule.check()
    return sets


def run_test_sets(
    trainer: L.Trainer,
    model: L.LightningModule,
    test_sets: dict[str, L.LightningDataModule],
    ckpt_path: str | None = None,
) -> None:
    """Test ``model`` (``ckpt_path``: the checkpoint the main test used) on every extra test set."""
    for name, datamodule in test_sets.items():
        log.info("testing on the extra test set %s (%s)", name, type(datamodule).__name__)
        model.test_prefix = f"{name}/"  # type: ignore[assignment]  # ImageClassifier's str attribute
        try:
            trainer.test(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True, verbose=False)
        finally:
            model.test_prefix = "test/"  # type: ignore[assignment]  # ImageClassifier's str attribute
