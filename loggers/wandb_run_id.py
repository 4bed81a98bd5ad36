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

from omegaconf import DictConfig, open_dict

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


def assign_wandb_run_id(cfg: DictConfig, resuming: bool, is_rank_zero: bool = True) -> str | None:
    """Set ``cfg.logger.wandb.id``/``resume``: the stored id when resuming, else a new one.

    Returns the id, or None when the config has no W&B logger. An id the user set
    (``logger.wandb.id=...``) is kept. Only rank zero writes the file (the other ranks never
    create a W&B run: Lightning's WandbLogger is rank-zero only).
    """
    node = (cfg.get("logger") or {}).get("wandb")
    if not isinstance(node, DictConfig) or "_target_" not in node:
        return None
    if node.get("id"):
        run_id = str(node.id)
    else:
        run_id = read_run_id(cfg.paths.output_dir) if resuming else None
        if run_id:
            log.info("W&B: resuming run id %s from %s", run_id, Path(cfg.paths.output_dir) / RUN_ID_FILE)
        else:
            run_id = new_run_id()
    if is_rank_zero:
        write_text_atomic(Path(cfg.paths.output_dir) / RUN_ID_FILE, run_id + "\n")
    with open_dict(node):
        node.id = run_id
        node.resume = "allow"
    return run_id
