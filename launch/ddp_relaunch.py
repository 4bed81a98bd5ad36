"""How DDP child ranks are launched from a Hydra job (Lightning's subprocess launcher).

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
entry module (``python -m litvision.train``), the job's own overrides (``hydra.overrides.task``: one point of a sweep),
the job's output dir as ``hydra.run.dir`` and ``hydra.mode=RUN``. Lightning offers no hook
for the command, so we replace the module-level function its launcher calls (checked
against Lightning 2.6; a missing attribute is reported, not ignored).
Under SLURM (``hydra/launcher=slurm``) SLURM starts one task per GPU itself and Lightning
launches nothing, so none of this is used there.
"""

from __future__ import annotations

import functools
import logging
import sys
import warnings

log = logging.getLogger(__name__)

# Hydra overrides that describe the sweep/launch rather than the job: a child rank must not
# inherit them (it would sweep again, or write elsewhere). Everything else is passed on.
_SWEEP_ONLY_HYDRA_KEYS = (
    "hydra.mode",
    "hydra.run",
    "hydra.sweep",
    "hydra/sweeper",
    "hydra.sweeper",
    "hydra/launcher",
    "hydra.launcher",
    "hydra.job.name",
    "hydra.output_subdir",
    "hydra.job.num",
    "hydra.job.id",
)


def _override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def _quote(value: str) -> str:
    """Quote a path for the Hydra override grammar (spaces, ``=``, ``,`` survive)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def hydra_job_command(module: str, local_rank: int) -> tuple[list[str], str]:
    """The command (and cwd) that makes a child rank run the current Hydra job, once, in RUN mode.

    The child runs ``python -m <module>`` (e.g. ``litvision.train``) rather than a file path,
    so it works the same from a checkout, an installed wheel or a console script.
    """
    from hydra.core.hydra_config import HydraConfig

    hc = HydraConfig.get()
    command = [sys.executable, "-m", module]
    for source in hc.runtime.config_sources:
        # the primary config dir (``-cp``, absolute here) and any ``--config-dir`` the user added
        if source.schema == "file" and source.provider == "main":
            command.append(f"--config-path={source.path}")
        elif source.schema == "file" and source.provider == "command-line":
            command.append(f"--config-dir={source.path}")
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


def use_hydra_job_command_for_ddp(module: str) -> None:
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
    subprocess_script._hydra_subprocess_cmd = functools.partial(hydra_job_command, module)
