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
from hydra.utils import get_class
from omegaconf import DictConfig

from train import managed_job, metrics_of, setup_run

log = logging.getLogger("litvision")


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    ckpt_path = Path(cfg.ckpt_path)
    if not ckpt_path.is_file():
        raise FileNotFoundError(f"ckpt_path={ckpt_path} does not exist (pass ckpt_path=<run dir>/checkpoints/<file>.ckpt)")
    model_class = get_class(cfg.model._target_)
    # weights_only=False: the checkpoint's hyperparameters hold the backbone/optimizer
    # factories; only load checkpoints you trust (your own runs).
    model = model_class.load_from_checkpoint(ckpt_path, map_location="cpu", weights_only=False)
    datamodule, model, trainer = setup_run(cfg, model=model)
    trainer.test(model, datamodule=datamodule, verbose=False)
    return metrics_of(trainer)


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    # trainer=ddp_sim|ddp: child ranks re-run this eval job (exact metrics: see datamodules/base.py);
    # `eval.py -m ckpt_path=a,b` gets a fresh process group per job
    with managed_job(__file__):
        evaluate(cfg)


if __name__ == "__main__":
    main()
