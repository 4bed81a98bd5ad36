"""Write a file dataset as WebDataset shards: ``python prepare_shards.py dataset=imagenet dataset.data_dir=TREE out=DIR``
(or ``litvision-prepare-shards``).

Any file dataset works (``dataset=imagenet``, ``dataset=class_folder``); train with
``dataset=imagenet_shards dataset.shards=DIR``. Re-running after an interruption keeps the
shards already written. The work is in :mod:`litvision.tasks.prepare_shards`.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from litvision.launch.job import run_job
from litvision.tasks.prepare_shards import prepare_shards


@hydra.main(version_base="1.3", config_path="conf", config_name="prepare_shards")
def main(cfg: DictConfig) -> None:
    run_job("litvision.prepare_shards", cfg, prepare_shards)


if __name__ == "__main__":
    main()
