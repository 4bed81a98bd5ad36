"""Per-sample predictions of a checkpoint: ``python predict.py ckpt_path=PATH (dataset=... split=test | images=DIR)``
(or ``litvision-predict``).

Writes ``<run dir>/predictions.csv`` (``id,pred,top5,prob_top1[,label]``), ``probabilities.npy``
(rows = CSV rows) and ``predictions.json``. Exact under DDP: every sample once, rows in split
order. The work is in :mod:`litvision.tasks.predict`.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from litvision.launch.job import run_job
from litvision.tasks.predict import predict


@hydra.main(version_base="1.3", config_path="conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    run_job("litvision.predict", cfg, predict)


if __name__ == "__main__":
    main()
