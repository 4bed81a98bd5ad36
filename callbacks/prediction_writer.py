"""Write ``predictions.csv`` + ``probabilities.npy`` (+ ``predictions.json``) once, on rank zero, in split order."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, cast

import lightning as L
import numpy as np
import torch

from litvision.datamodules.readers.group_file import read_group_file
from litvision.lightning_modules.metrics.groups import GroupCounts, group_summary
from litvision.utils.atomic_write import write_atomic, write_json_atomic, write_text_atomic
from litvision.utils.names import Escaped, csv_text, escape_name

log = logging.getLogger(__name__)

TOP_K_SEPARATOR = "|"  # class names may contain spaces and commas ("golden retriever")
TOP_K_SEPARATOR_ESCAPED = "\\x7c"  # a "|" inside a class name, in the top-k cell (litvision.utils.names)


class PredictionWriter(L.Callback):
    """Collect ``{"positions", "probs"}`` from every predict batch, gather them from all ranks and
    write them once, ordered by position in the split (the order of a single-process run).

    Files in ``output_dir``:

    - ``predictions.csv``: ``id,pred,top5,prob_top1[,label]``; ``pred``/``label`` are class names,
      ``top5`` the ``top_k`` most probable class names best first, ``|``-separated;
      ``label`` (the true class) only where the data has labels.
    - ``probabilities.npy``: float32 (rows = CSV rows, columns = the model's classes in order).
    - ``predictions.json``: the class names (column order), what was predicted, counts, and the
      ids of unreadable images that got no row.

    Ids and class names are escaped (:mod:`litvision.utils.names`; in the CSV also guarded against
    spreadsheet formulas, :func:`~litvision.utils.names.read_csv_cell` reads a cell back); a ``|``
    inside a class name is written ``\\x7c`` in the ``top5`` cell.

    Reads ``ids``/``targets``/``has_labels``/``description`` from the trainer's datamodule
    (:class:`~litvision.datamodules.prediction.PredictionDataModule`) and ``class_names`` from the module.
    """

    def __init__(
        self,
        output_dir: str | Path,
        top_k: int = 5,
        csv_name: str = "predictions.csv",
        probs_name: str = "probabilities.npy",
        meta_name: str = "predictions.json",
        groups: str | None = None,
    ) -> None:
        self.output_dir = Path(output_dir)
        self.top_k = top_k
        self.csv_name, self.probs_name, self.meta_name = csv_name, probs_name, meta_name
        # groups=PATH: each row's group(s) as extra columns and, with labels, per-group metrics in predictions.json
        self.groups = read_group_file(groups) if groups else None
        self.summary: dict[str, Any] = {}
        self._positions: list[torch.Tensor] = []
        self._probs: list[torch.Tensor] = []

    def on_predict_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._positions, self._probs = [], []

    def on_predict_batch_end(
        self, trainer, pl_module, outputs: dict[str, torch.Tensor], batch, batch_idx, dataloader_idx=0
    ) -> None:
        self._positions.append(outputs["positions"].cpu())
        self._probs.append(outputs["probs"].cpu())

    def on_predict_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # class_names: set by our LightningModules (nn.Module.__getattr__ types it Tensor | Module)
        class_names = cast("list[str]", pl_module.class_names)
        num_classes = len(class_names)
        positions = torch.cat(self._positions).numpy() if self._positions else np.zeros(0, np.int64)
        probs = torch.cat(self._probs).numpy() if self._probs else np.zeros((0, num_classes), np.float32)
        parts = _gather((positions, probs), trainer.world_size)
        if trainer.is_global_zero:
            positions = np.concatenate([p for p, _ in parts])
            probs = np.concatenate([q for _, q in parts]).astype(np.float32)
            datamodule = trainer.datamodule  # type: ignore[attr-defined]  # Lightning sets it; Trainer does not declare it
            self.summary = self._write(datamodule, class_names, positions, probs)

    def _write(self, data: Any, class_names: list[str], positions: np.ndarray, probs: np.ndarray) -> dict[str, Any]:
        order = np.argsort(positions, kind="stable")
        positions, probs = positions[order], probs[order]
        if len(np.unique(positions)) != len(positions):
            raise RuntimeError("a sample was predicted twice: the prediction sampler is padding the shards")
        ids = data.ids
        missing = np.setdiff1d(np.arange(len(ids)), positions)
        if len(missing):
            log.warning(
                "%d unreadable image(s) got no prediction: %s",
                len(missing),
                ", ".join(escape_name(i) for i in ids[missing][:10]),
            )
        names = np.asarray(class_names, dtype=object)
        written = [escape_name(name) for name in class_names]
        ranked = np.asarray([name.replace(TOP_K_SEPARATOR, TOP_K_SEPARATOR_ESCAPED) for name in written], dtype=object)
        k = min(self.top_k, len(class_names))
        top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        labels = data.targets[positions] if data.has_labels else None

        header = ["id", "pred", f"top{self.top_k}", "prob_top1"] + (["label"] if labels is not None else [])
        groups: list[list[str]] = [[] for _ in positions]
        if self.groups is not None:
            header += [f"group:{column}" for column in self.groups.columns]
            groups = [
                list(self.groups.rows.get(str(ids[position]), ("",) * len(self.groups.columns)))
                for position in positions
            ]
        rows = (
            [
                ids[position],
                names[top[row, 0]],
                Escaped(TOP_K_SEPARATOR.join(ranked[top[row]])),
                f"{probs[row, top[row, 0]]:.6f}",
            ]
            + ([names[labels[row]]] if labels is not None else [])
            + groups[row]
            for row, position in enumerate(positions)
        )
        text = csv_text(header, rows)
        csv_path, probs_path = self.output_dir / self.csv_name, self.output_dir / self.probs_name
        write_text_atomic(csv_path, text)
        write_atomic(probs_path, lambda handle: np.save(handle, probs))
        summary = {
            "predictions": str(csv_path),
            "probabilities": str(probs_path),
            "source": escape_name(data.description),
            "classes": written,
            "num_samples": int(len(positions)),
            "missing_ids": [escape_name(i) for i in ids[missing]],
        }
        if labels is not None:
            summary["accuracy_top1"] = float((top[:, 0] == labels).mean()) if len(labels) else None
            if self.groups is not None:
                summary["groups"] = self._group_metrics(ids[positions], top[:, 0], labels, class_names)
        write_json_atomic(self.output_dir / self.meta_name, summary)
        log.info("wrote %d predictions to %s (probabilities: %s)", len(positions), csv_path, probs_path)
        return summary

    def _group_metrics(self, ids: np.ndarray, preds: np.ndarray, labels: np.ndarray, class_names: list[str]) -> dict:
        """Per-group metrics of the written predictions (callbacks/group_metrics.py's, prefix ``predict/``), null = absent."""
        assert self.groups is not None  # called only with groups=PATH
        counts = GroupCounts(self.groups.num_groups, len(class_names))
        counts.update(torch.as_tensor(preds), torch.as_tensor(labels), torch.as_tensor(self.groups.codes_for(ids)))
        flat = group_summary(counts.compute(), "predict/", self.groups.columns, self.groups.names, class_names)
        return {key: (None if value != value else value) for key, value in flat.items()}


def _gather(part: tuple[np.ndarray, np.ndarray], world_size: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Every rank's (positions, probs); shards differ in size, so objects rather than tensors."""
    if world_size == 1 or not torch.distributed.is_initialized():
        return [part]
    parts: list[Any] = [None] * world_size
    torch.distributed.all_gather_object(parts, part)
    return parts
