"""Per-process set-up for a job: its own DDP process group, and rank-zero-only logging."""

from __future__ import annotations

import io
import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from litvision.utils.distributed import global_rank

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


def quiet_non_zero_ranks() -> None:
    """Print INFO logs once: ranks > 0 keep only warnings and errors (console and log file)."""
    if global_rank() == 0:
        return
    for handler in logging.getLogger().handlers:
        handler.setLevel(max(handler.level, logging.WARNING))


def escape_names_in_logs() -> None:
    """Log lines (console and log file) write what their stream cannot encode escaped, ``\\xNN`` for a
    byte of a file name that is not UTF-8 (:mod:`litvision.utils.names`), instead of dropping the line
    with "surrogates not allowed"."""
    from litvision.utils.names import UNENCODABLE_ERRORS

    for handler in logging.getLogger().handlers:
        stream = getattr(handler, "stream", None)
        if isinstance(stream, io.TextIOWrapper) and stream.errors in ("strict", "backslashreplace", "surrogateescape"):
            stream.reconfigure(errors=UNENCODABLE_ERRORS)


def ignore_sync_dist_advice() -> None:
    """Drop Lightning's "use sync_dist=True when logging on epoch level" advice under DDP.

    Our epoch-level val/test values come from torchmetrics' ``compute()``, already synced
    across ranks; ``sync_dist=True`` would add a collective per value (and Lightning's mean
    truncates unequal integer sample counts). ``train/loss_epoch`` is deliberately rank 0's
    running mean: syncing it would mean a collective on every training step.
    """
    warnings.filterwarnings("ignore", message=r".*when logging on epoch level in distributed setting.*")


class _DropLightningTips(logging.Filter):
    """Lightning 2.6 advertises its cloud products (litlogger, litmodels) at INFO on every run, and
    says that it keeps the model summary callback our config gives it (conf/callbacks/model_summary.yaml)."""

    DROPPED = ("\U0001f4a1 Tip:", "Trainer already configured with model summary callbacks")

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.DROPPED)


def quiet_library_noise() -> None:
    """Silence what libraries print that a user cannot act on (each line checked against the
    library versions we pin; a real problem still comes through as a warning or error):

    - Lightning's "Tip: ... try installing litlogger / litmodels" advertisements;
    - torch's FutureWarning about ``isinstance(treespec, LeafSpec)``, raised inside Lightning's
      own ``utilities/_pytree.py`` (nothing in litvision or the user's code to change);
    - faiss's loader, which logs at INFO every instruction set it tries, with a
      ``No module named 'faiss.swigfaiss_avx512'`` line on CPUs without AVX512.
    """
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        tips = logging.getLogger(name)  # rank_zero_info logs through one of them, depending on import order
        if not any(isinstance(f, _DropLightningTips) for f in tips.filters):
            tips.addFilter(_DropLightningTips())
    warnings.filterwarnings(
        "ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated", category=FutureWarning
    )
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
