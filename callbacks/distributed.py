"""Process-level DDP plumbing for Hydra scripts: how ranks are launched, and rank-zero logging.

Why the launch needs fixing: with ``strategy=ddp`` Lightning starts ranks 1..N-1 by
re-running the *command line* (``_hydra_subprocess_cmd`` in
lightning/fabric/strategies/launchers/subprocess_script.py): ``sys.argv`` plus
``hydra.run.dir=<run dir>``. That is right for a plain run, but wrong inside a sweep:

* ``python train.py -m optimizer.lr=0.1,0.05 trainer=ddp_sim``: ``sys.argv`` holds the whole
  sweep (``-m`` and the comma lists), so every rank-1 process would start a sweep of its own;
  and ``hydra.run.dir`` is not the job's directory in multirun mode.
* ``hparams_search=...`` sets ``hydra.mode: MULTIRUN`` in the config, same problem.
* under submitit (``hydra/launcher=local``) ``sys.argv`` is submitit's own runner
  (``python -m submitit.core._submit <folder>``), not train.py at all.

:func:`use_hydra_job_command_for_ddp` makes the children re-run *this job* instead: the
script itself, the job's own overrides (``hydra.overrides.task``: one point of a sweep),
the job's output dir as ``hydra.run.dir`` and ``hydra.mode=RUN``. Lightning offers no hook
for the command, so we replace the module-level function its launcher calls (checked
against Lightning 2.6; a missing attribute is reported, not ignored).
Under SLURM (``hydra/launcher=slurm``) SLURM starts one task per GPU itself and Lightning
launches nothing, so none of this is used there.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)

# Hydra overrides that describe the sweep/launch rather than the job: a child rank must not
# inherit them (it would sweep again, or write elsewhere). Everything else is passed on.
_SWEEP_ONLY_HYDRA_KEYS = (
    "hydra.mode", "hydra.run", "hydra.sweep", "hydra/sweeper", "hydra.sweeper", "hydra/launcher",
    "hydra.launcher", "hydra.job.name", "hydra.output_subdir", "hydra.job.num", "hydra.job.id",
)


def _override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def _quote(value: str) -> str:
    """Quote a path for the Hydra override grammar (spaces, ``=``, ``,`` survive)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def hydra_job_command(script: str | Path, local_rank: int) -> tuple[list[str], str]:
    """The command (and cwd) that makes a child rank run the current Hydra job, once, in RUN mode."""
    from hydra.core.hydra_config import HydraConfig

    hc = HydraConfig.get()
    command = [sys.executable, str(Path(script).resolve())]
    # The primary config dir and name the parent used (``-cp``/``-cn`` included).
    for source in hc.runtime.config_sources:
        if source.provider == "main" and str(source.path).startswith("file://"):
            command.append(f"--config-path={str(source.path)[len('file://'):]}")
    if hc.job.config_name:
        command.append(f"--config-name={hc.job.config_name}")
    command += list(hc.overrides.task)
    command += [o for o in hc.overrides.hydra if not _override_key(o).startswith(_SWEEP_ONLY_HYDRA_KEYS)]
    command += [
        f"hydra.run.dir={_quote(hc.runtime.output_dir)}",
        "hydra.mode=RUN",
        # its own log file (<job name>.log, named as Lightning names it) instead of interleaving with rank 0's
        f"hydra.job.name={hc.job.name}_ddp_process_{local_rank}",
        # rank 0 already wrote <run dir>/.hydra/; a second writer would race it
        "hydra.output_subdir=null",
    ]
    return command, hc.runtime.cwd


def use_hydra_job_command_for_ddp(script: str | Path) -> None:
    """Make Lightning's DDP subprocess launcher start child ranks with :func:`hydra_job_command`."""
    from lightning.pytorch.strategies.launchers import subprocess_script

    if not hasattr(subprocess_script, "_hydra_subprocess_cmd"):
        warnings.warn(
            "lightning.pytorch.strategies.launchers.subprocess_script._hydra_subprocess_cmd is gone "
            "(Lightning changed): strategy=ddp inside `-m` sweeps or submitit jobs will relaunch the "
            "wrong command. Pin lightning to a version where it exists (2.6 was checked).",
            stacklevel=2,
        )
        return
    subprocess_script._hydra_subprocess_cmd = functools.partial(hydra_job_command, script)


# Set by Lightning's subprocess launcher in the launching process (and left there).
_LAUNCH_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")


@contextmanager
def isolated_ddp_job() -> Iterator[None]:
    """Give every job of a sweep its own DDP process group and rendezvous.

    Lightning leaves the process group initialised and MASTER_PORT & co. set after a run.
    In a multirun the next job in the same process would then reuse a group whose other
    ranks have exited ("Connection closed by peer"). On exit this destroys the group and
    restores the launch variables to what they were before the job (so values set by
    SLURM or torchrun stay untouched).
    """
    saved = {name: os.environ.get(name) for name in _LAUNCH_ENV}
    try:
        yield
    finally:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def global_rank() -> int:
    """This process's rank as Lightning sees it before the Trainer exists (env vars), later exact."""
    from lightning.pytorch.utilities import rank_zero_only

    return int(getattr(rank_zero_only, "rank", 0) or 0)


def quiet_non_zero_ranks() -> None:
    """Print INFO logs once: ranks > 0 keep only warnings and errors (console and log file)."""
    if global_rank() == 0:
        return
    for handler in logging.getLogger().handlers:
        handler.setLevel(max(handler.level, logging.WARNING))


def ignore_sync_dist_advice() -> None:
    """Drop Lightning's "use sync_dist=True when logging on epoch level" advice under DDP.

    Our epoch-level val/test values come from torchmetrics' ``compute()``, already synced
    across ranks; ``sync_dist=True`` would add a collective per value (and Lightning's mean
    truncates unequal integer sample counts). ``train/loss_epoch`` is deliberately rank 0's
    running mean: syncing it would mean a collective on every training step.
    """
    warnings.filterwarnings("ignore", message=r".*when logging on epoch level in distributed setting.*")
