"""The evaluation task: test a checkpoint on a dataset's test split."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.utils import get_class
from omegaconf import DictConfig

from litvision.tasks.build import metrics_of, setup_run


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
