"""The audit's findings in the run's loggers: W&B tables with thumbnails, the figures, the summary numbers.

Ids and names in the tables are escaped as in every file litvision writes (:mod:`litvision.utils.names`).

Offline W&B keeps a table that holds images only in an artifact staged outside the run dir
(wandb/wandb#4611), so such a table is also logged without its images (``audit/<table>_rows``) and its
thumbnails as an image list (``audit/<table>_images``): an offline run keeps both under
``<run dir>/wandb/.../media`` (as callbacks/misclassified_examples.py does).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig

from litvision.data_audit.section import Section
from litvision.tasks.build import instantiate_group, log_config
from litvision.utils.names import escape_name
from litvision.utils.thumbnails import same_size


def finite_metrics(sections: list[Section]) -> dict[str, float]:
    return {k: float(v) for s in sections for k, v in s.metrics.items() if v is not None and math.isfinite(float(v))}


def log_findings(cfg: DictConfig, sections: list[Section], report: Path) -> None:
    """Send tables, figures and numbers to every configured logger (none: nothing to do)."""
    from lightning.pytorch.loggers import WandbLogger

    loggers = instantiate_group(cfg.get("logger"))
    if not loggers:
        return
    log_config(cfg, loggers)
    metrics = finite_metrics(sections)
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            _log_wandb(logger.experiment, sections, report, metrics)
        else:
            logger.log_metrics(metrics)
            logger.finalize("success")


def _log_wandb(run: Any, sections: list[Section], report: Path, metrics: dict[str, float]) -> None:
    import wandb

    payload: dict[str, Any] = {}
    for section in sections:
        for table in section.tables:
            with_images = bool(table.image_columns) and len(table.thumbnails) == len(table.rows)
            columns = [*table.image_columns, *table.columns] if with_images else table.columns
            wandb_table = wandb.Table(columns=list(columns))
            strips, captions = [], []
            rows = [[escape_name(v) if isinstance(v, str) else v for v in row] for row in table.rows]
            for k, row in enumerate(rows):
                cells = [wandb.Image(t) for t in table.thumbnails[k]] if with_images else []
                wandb_table.add_data(*cells, *row)
                if with_images:
                    strips.append(_side_by_side(table.thumbnails[k]))
                    captions.append(" | ".join(str(v) for v in row[:4]))
            # one size for the whole list: W&B warns "Images sizes do not match" otherwise
            images = [
                wandb.Image(strip, caption=caption) for strip, caption in zip(same_size(strips), captions, strict=True)
            ]
            payload[f"audit/{table.name}"] = wandb_table
            if images:
                payload[f"audit/{table.name}_images"] = images
                payload[f"audit/{table.name}_rows"] = wandb.Table(columns=list(table.columns), data=rows)
        for figure in section.figures:
            payload[f"audit/{figure.stem}"] = wandb.Image(str(figure))
    run.log(payload)
    run.summary.update(metrics)
    run.save(str(report), base_path=str(report.parent.parent), policy="now")


def _side_by_side(thumbs: list[np.ndarray]) -> np.ndarray:
    if len(thumbs) == 1:
        return thumbs[0]
    height = max(t.shape[0] for t in thumbs)
    padded = [np.pad(t, ((0, height - t.shape[0]), (0, 4), (0, 0)), constant_values=255) for t in thumbs]
    return np.concatenate(padded, axis=1)
