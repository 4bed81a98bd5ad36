"""Keep one W&B run per training run across kills: the run id lives in the run dir.

A resumed run (``ckpt_path=last``) must keep logging into the *same* W&B run, not start a
new one with a history that begins mid-training. W&B resumes a run given its id, so the id
is chosen before the logger starts, written to ``<run dir>/wandb_run_id.txt`` and, when
training resumes from a checkpoint in that dir, read back and passed as ``id`` with
``resume="allow"``. Offline runs work the same way: ``wandb sync`` merges the two
``offline-run-*-<id>`` folders into one run.
"""

from __future__ import annotations

import logging
import secrets
import string
from pathlib import Path

from litvision.utils.atomic_write import write_text_atomic

log = logging.getLogger(__name__)
RUN_ID_FILE = "wandb_run_id.txt"


def new_run_id() -> str:
    """8 lowercase letters/digits, the shape of W&B's own ids (its generator is not public API)."""
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(8))


def read_run_id(output_dir: str | Path) -> str | None:
    path = Path(output_dir) / RUN_ID_FILE
    if not path.is_file():
        return None
    return path.read_text().strip() or None


def wandb_run_id(given: str | None, output_dir: str | Path, resuming: bool, is_rank_zero: bool = True) -> str:
    """The W&B run id of a training run: ``given`` (``logger.wandb.id=...``) as is, else the stored id
    when resuming, else a new one. Only rank zero writes the file (the other ranks never create a
    W&B run: Lightning's WandbLogger is rank-zero only)."""
    run_id = str(given) if given else None
    if run_id is None and resuming:
        run_id = read_run_id(output_dir)
        if run_id:
            log.info("W&B: resuming run id %s from %s", run_id, Path(output_dir) / RUN_ID_FILE)
    run_id = run_id or new_run_id()
    if is_rank_zero:
        write_text_atomic(Path(output_dir) / RUN_ID_FILE, run_id + "\n")
    return run_id
