"""Audit a dataset: ``python audit.py dataset=... [audit.sections=[balance,health,duplicates,label_errors]]``
(or ``litvision-audit``).

Hydra composes the run from ``conf/audit.yaml`` (the same conf tree as ``train.py``). Writes
``<run dir>/audit/report.md`` with figures and CSVs beside it (``duplicates.csv``, ``label_issues.csv``,
...) and logs the same to W&B. The work is in :mod:`litvision.tasks.audit`.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from litvision.launch.job import run_job
from litvision.tasks.audit import audit


@hydra.main(version_base="1.3", config_path="conf", config_name="audit")
def main(cfg: DictConfig) -> None:
    run_job("litvision.audit", cfg, audit)


if __name__ == "__main__":
    main()
