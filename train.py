"""Train an image classifier: ``python train.py [group=option ...] [key=value ...]`` (or ``litvision-train``).

Hydra composes the run from ``conf/train.yaml``; every object is built by
``hydra.utils.instantiate`` from its ``_target_``. The run fits, tests the best checkpoint
and writes ``<run dir>/metrics.json``. The work is in :mod:`litvision.tasks.train`.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from litvision.launch.job import run_job
from litvision.tasks.train import train


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    return run_job("litvision.train", cfg, train)


if __name__ == "__main__":
    main()
