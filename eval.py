"""Test a checkpoint: ``python eval.py ckpt_path=PATH [dataset=... dataset.data_dir=...]``.

The model (architecture, classes) comes from the checkpoint itself, so only the dataset
needs to be named; results go to ``<run dir>/metrics.json`` like train.py's.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import hydra
import lightning as L
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig

from callbacks.distributed import (
    ignore_sync_dist_advice,
    isolated_ddp_job,
    quiet_non_zero_ranks,
    use_hydra_job_command_for_ddp,
)
from callbacks.wandb_logger import finish_wandb
from train import build_callbacks, instantiate_group, log_config, metrics_of

log = logging.getLogger("litvision")


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    ckpt_path = Path(cfg.ckpt_path)
    if not ckpt_path.is_file():
        raise FileNotFoundError(f"ckpt_path={ckpt_path} does not exist (pass ckpt_path=<run dir>/checkpoints/<file>.ckpt)")
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate(cfg.dataset)
    model_class = get_class(cfg.model._target_)
    # weights_only=False: the checkpoint's hyperparameters hold the backbone/optimizer
    # factories; only load checkpoints you trust (your own runs).
    model = model_class.load_from_checkpoint(ckpt_path, map_location="cpu", weights_only=False)
    loggers = instantiate_group(cfg.get("logger"))
    callbacks = build_callbacks(cfg, has_logger=bool(loggers))
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    log_config(cfg, loggers)
    trainer.test(model, datamodule=datamodule, verbose=False)
    return metrics_of(trainer)


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    # trainer=ddp_sim|ddp: child ranks re-run this eval job (exact metrics: see datamodules/base.py)
    use_hydra_job_command_for_ddp(__file__)
    quiet_non_zero_ranks()
    ignore_sync_dist_advice()
    try:
        with isolated_ddp_job():  # `eval.py -m ckpt_path=a,b trainer=ddp_sim`: a fresh process group per job
            evaluate(cfg)
    except BaseException:
        finish_wandb(exit_code=1)
        raise
    finish_wandb()


if __name__ == "__main__":
    main()
