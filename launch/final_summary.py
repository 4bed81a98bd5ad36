"""The last lines a run prints: its result and where its files are, after W&B's own closing lines."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

NUM_WORST = 5


def _show(path: Path | str) -> str:
    """A path as short as it can be and still copy-pasted from anywhere below the start directory."""
    path = Path(path).absolute()
    try:
        relative = path.relative_to(Path.cwd())
    except ValueError:
        return str(path)
    return str(relative) if str(relative) != "." else str(path)


def _offline_wandb_run(run_dir: Path) -> Path | None:
    runs = sorted(run_dir.glob("wandb/offline-run-*"), key=lambda p: p.stat().st_mtime)
    return runs[-1] if runs else None


def metrics_lines(metrics: dict[str, Any], run_dir: Path, metrics_path: Path) -> list[str]:
    """train.py / eval.py: top-1, top-5, balanced accuracy and the worst classes of the test split
    (the val split when the run did not test), then the run dir and metrics.json."""
    split = "test" if metrics.get("test/acc_top1") is not None else "val"
    if metrics.get(f"{split}/acc_top1") is None:
        return []
    parts = [f"top-1 {metrics[f'{split}/acc_top1']:.4f}"]
    for key, name in (("acc_top5", "top-5"), ("balanced_acc", "balanced accuracy")):
        if metrics.get(f"{split}/{key}") is not None:
            parts.append(f"{name} {metrics[f'{split}/{key}']:.4f}")
    lines = [f"Result ({split} split): " + ", ".join(parts)]
    worst = {
        k.rsplit("/", 1)[1]: v for k, v in metrics.items() if k.startswith(f"{split}/worst_recall/") and v is not None
    }
    if not worst:  # no accuracy-paradox report in this run: the lowest per-class recalls
        recalls = {
            k[len(f"{split}/recall/") :]: v
            for k, v in metrics.items()
            if k.startswith(f"{split}/recall/") and v is not None
        }
        worst = dict(sorted(recalls.items(), key=lambda item: item[1])[:NUM_WORST])
    if worst:
        ranked = sorted(worst.items(), key=lambda item: item[1])[:NUM_WORST]
        lines.append("Worst classes (recall): " + ", ".join(f"{name} {value:.3f}" for name, value in ranked))
    lines += [f"Run dir: {_show(run_dir)}", f"Metrics: {_show(metrics_path)}"]
    return lines


def prediction_lines(summary: dict[str, Any]) -> list[str]:
    """predict.py: how many images, how many unreadable, accuracy when labels are known, the files."""
    missing = len(summary.get("missing_ids") or [])
    count = int(summary.get("num_samples", 0))
    line = f"Predicted {count} image{'' if count == 1 else 's'} ({summary.get('source', '?')})"
    line += f", {missing} unreadable left out" if missing else ", none unreadable"
    lines = [line]
    if summary.get("accuracy_top1") is not None:
        lines.append(f"Top-1 accuracy against the labels: {summary['accuracy_top1']:.4f}")
    lines.append(f"Predictions: {_show(summary['predictions'])}")
    lines.append(f"Probabilities: {_show(summary['probabilities'])}")
    return lines


def final_summary_lines(cfg: DictConfig, result: dict[str, Any] | None) -> list[str]:
    """What :func:`print_final_summary` prints for this job's ``result`` (empty when there is nothing to say)."""
    if not result:
        return []
    if "predictions" in result:
        return prediction_lines(result)
    output_dir = OmegaConf.select(cfg, "paths.output_dir", default=None)
    if output_dir is None:
        return []
    run_dir = Path(output_dir)
    metrics_path = Path(
        OmegaConf.select(cfg, "callbacks.metrics_summary.path", default=None) or run_dir / "metrics.json"
    )
    lines = metrics_lines(result, run_dir, metrics_path)
    offline = _offline_wandb_run(run_dir) if lines else None
    if offline is not None:
        lines.append(f"W&B (offline): wandb sync {_show(offline)}")
    return lines


def print_final_summary(cfg: DictConfig, result: dict[str, Any] | None) -> None:
    """Print the result last, after W&B's history/summary lines (``wandb.finish``): one short line
    each, labels first, so no path is broken across lines by a table or title that wraps."""
    lines = final_summary_lines(cfg, result)
    if lines:
        sys.stderr.flush()  # W&B's lines first, also where stderr and stdout share a terminal
        print("\n" + "\n".join(lines), flush=True)
