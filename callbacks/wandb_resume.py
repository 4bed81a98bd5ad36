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
import os
import tempfile
from pathlib import Path

from omegaconf import DictConfig, open_dict

log = logging.getLogger(__name__)
RUN_ID_FILE = "wandb_run_id.txt"


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
            import wandb

            run_id = wandb.util.generate_id()
    if is_rank_zero:
        _write_atomic(Path(cfg.paths.output_dir) / RUN_ID_FILE, run_id)
    with open_dict(node):
        node.id = run_id
        node.resume = "allow"
    return run_id
