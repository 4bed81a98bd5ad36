"""Test a checkpoint: ``python eval.py ckpt_path=PATH [dataset=... dataset.data_dir=...]`` (or ``litvision-eval``).

The model (architecture, classes) comes from the checkpoint itself, so only the dataset
needs to be named; results go to ``<run dir>/metrics.json`` like train.py's. The work is in
:mod:`litvision.tasks.evaluate`.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from litvision.launch.job import run_job
from litvision.tasks.evaluate import evaluate


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    run_job("litvision.eval", cfg, evaluate)


if __name__ == "__main__":
    main()
