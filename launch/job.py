"""What every entry script does around its task: process set-up, W&B tear-down, the sweep objective."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, cast

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from litvision.launch.ddp_relaunch import use_hydra_job_command_for_ddp
from litvision.launch.final_summary import print_final_summary
from litvision.launch.process import (
    escape_names_in_logs,
    ignore_sync_dist_advice,
    isolated_ddp_job,
    quiet_library_noise,
    quiet_non_zero_ranks,
)
from litvision.launch.sweep_objective import metric_direction, optimized_value
from litvision.launch.user_errors import user_errors_as_one_line
from litvision.loggers.wandb_logger import finish_wandb
from litvision.utils.distributed import global_rank


def hydra_settings() -> DictConfig | None:
    """The ``hydra`` node of this job, or None when a task is called without @hydra.main."""
    # HydraConfig.get() is annotated as the HydraConf dataclass; it returns the DictConfig built from it
    return cast(DictConfig, HydraConfig.get()) if HydraConfig.initialized() else None


@contextmanager
def managed_job(module: str) -> Iterator[None]:
    """Process set-up and tear-down shared by every entry script's jobs (also inside sweeps)."""
    # DDP child ranks must re-run this job, not the command line (which may be a whole sweep)
    use_hydra_job_command_for_ddp(module)
    quiet_non_zero_ranks()
    escape_names_in_logs()
    ignore_sync_dist_advice()
    quiet_library_noise()
    try:
        with isolated_ddp_job():  # the next job of a sweep starts a fresh process group
            yield
    except BaseException:
        finish_wandb(exit_code=1)  # the W&B run is marked failed; the sweep summary marks the job FAILED
        raise
    finish_wandb()


def run_job(module: str, cfg: DictConfig, task: Callable[[DictConfig], dict[str, Any]]) -> float | None:
    """Run ``task(cfg)`` as the job of entry module ``module``; return the sweep objective.

    Bad input (a UserError) ends a single run with one line on stderr and exit status 1;
    in a sweep it fails the job only (:mod:`litvision.launch.user_errors`).
    """
    hydra_cfg = hydra_settings()
    single_run = hydra_cfg is not None and hydra_cfg.mode == RunMode.RUN
    with user_errors_as_one_line(single_run), managed_job(module):
        metrics = task(cfg)
    if global_rank() == 0:
        print_final_summary(cfg, metrics)  # after managed_job has finished W&B: the result is printed last
    name = cfg.get("optimized_metric")
    if single_run and name not in metrics:
        return None  # no sweeper reads it; e.g. train=false has no val/ metrics
    return optimized_value(metrics, name, metric_direction(name, hydra_cfg))
