"""Hydra callback: lock the run dir (or a multirun's sweep dir) before Hydra writes anything there.

Hydra's ``run_job`` (hydra/core/utils.py, checked in 1.3) creates the run dir, configures the
log file and saves ``.hydra/`` *before* ``on_job_start`` and the task run, so a lock taken in
the task would come too late: the refused second run would already have overwritten the
first's ``.hydra/config.yaml`` and written into its ``train.log``. ``on_run_start`` (and
``on_multirun_start``) run before ``run_job``: the refused run writes nothing into the dir.

* single run: ``hydra.run.dir`` is locked; a resume (``ckpt_path=last``) is a single run in the
  same dir, so it takes the same lock.
* multirun: the sweep dir is locked once, by the process that starts the sweep; its jobs (own
  subdirs, in this process or in submitit/SLURM processes) take no lock of their own.
* DDP: only the launching process locks; the child ranks Lightning, torchrun or SLURM start
  re-run the job in the same dir (:func:`litvision.utils.run_dir_lock.is_launching_process`).
"""

from __future__ import annotations

import os
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from litvision.launch.user_errors import user_errors_as_one_line
from litvision.utils.run_dir_lock import RunDirLock, is_launching_process


class RunDirLockCallback(Callback):
    """Hold ``<run dir>/run.lock`` for the whole run (see the module docstring)."""

    def __init__(self) -> None:
        self.lock: RunDirLock | None = None

    def _acquire(self, config: DictConfig, key: str) -> None:
        if not is_launching_process():
            return
        # ${hydra:...} in the dir's interpolation needs the Hydra config; run_job sets it again itself
        HydraConfig.instance().set_config(config)
        run_dir = os.path.abspath(str(OmegaConf.select(config, key)))  # as run_job resolves it
        self.lock = RunDirLock(run_dir, setting=key)
        with user_errors_as_one_line(single_run=True):  # refused: one line, exit status 1
            self.lock.acquire()

    def _release(self) -> None:
        if self.lock is not None:
            self.lock.release()

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._acquire(config, "hydra.run.dir")

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._release()

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._acquire(config, "hydra.sweep.dir")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._release()
