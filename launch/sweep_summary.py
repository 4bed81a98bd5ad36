"""Hydra callback: a sweep summary table, one row per job, best first, failures included.

After every job of a multirun (``python train.py -m ...``, Optuna, submitit) the job's
status goes to ``<job dir>/job_status.json`` and ``<sweep dir>/summary.csv`` and
``<sweep dir>/summary.md`` are rebuilt from all status files and ``metrics.json`` files in
the sweep dir. Rebuilding from disk (rather than keeping rows in memory) is what makes it
work when jobs run in other processes or on other machines (submitit, SLURM), and leaves a
complete table even when the sweep itself dies before Hydra's ``on_multirun_end``.

Status: COMPLETED; DIVERGED (finished, but the optimized metric is NaN/inf/missing);
UNREADABLE (its ``job_status.json`` or ``metrics.json`` is half-written or not JSON: the
file and the parse error are in the error column); FAILED (the job raised: the error is in
the table). Rows are sorted by the optimized metric in its direction, then diverged,
unreadable and failed jobs. One broken file never costs the other rows.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from litvision.launch.sweep_objective import metric_direction
from litvision.utils.atomic_write import write_text_atomic
from litvision.utils.names import csv_cell, escape_surrogates

log = logging.getLogger(__name__)
STATUS_FILE = "job_status.json"
KEY_METRICS = ("val/acc_best", "val/acc_top1", "test/acc_top1", "test/balanced_acc", "test/loss")


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _split_override(override: str) -> tuple[str, str]:
    key, _, value = override.partition("=")
    return key.lstrip("+~"), value


# ---- building the table ---------------------------------------------------------------------
def _read_record(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(the JSON object in ``path``, None), or (None, why it cannot be read).

    A job killed while writing, a disk that filled up or a file from an older version can
    leave a broken file in a sweep dir of hundreds of jobs: that row is marked, not fatal.
    """
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as exc:  # ValueError: JSONDecodeError, UnicodeDecodeError
        return None, f"{path} unreadable ({type(exc).__name__}: {exc})"
    if not isinstance(record, dict):
        return None, f"{path} unreadable (not a JSON object)"
    return record, None


def _unreadable_row(job_dir: Path, error: str) -> dict[str, Any]:
    log.warning("sweep summary: %s", error)
    return {
        "job_num": int(job_dir.name) if job_dir.name.isdigit() else None,
        "status": "UNREADABLE",
        "overrides": [],
        "optimized_metric": None,
        "error": error,
        "output_dir": str(job_dir),
        "value": None,
        "metrics": {},
    }


def collect_rows(sweep_dir: str | Path) -> list[dict[str, Any]]:
    """One row per ``job_status.json`` under the sweep dir, with that job's final metrics."""
    rows = []
    for status_path in sorted(Path(sweep_dir).rglob(STATUS_FILE)):
        if ".submitit" in status_path.parts:
            continue
        job, error = _read_record(status_path)
        if job is None or "status" not in job:
            rows.append(_unreadable_row(status_path.parent, error or f"{status_path} has no 'status'"))
            continue
        metrics_path = status_path.parent / "metrics.json"
        metrics: dict[str, Any] = {}
        if metrics_path.is_file():
            record, error = _read_record(metrics_path)
            if record is None:  # the job's own record stays: its swept values are still shown
                log.warning("sweep summary: %s", error)
                rows.append({**job, "status": "UNREADABLE", "error": error, "value": None, "metrics": {}})
                continue
            metrics = record
        value = _finite(metrics.get(job.get("optimized_metric") or "", None))
        status = job["status"]
        if status == "COMPLETED" and job.get("optimized_metric") and value is None:
            status = "DIVERGED"
        rows.append({**job, "status": status, "value": value, "metrics": metrics})
    return rows


def sort_rows(rows: list[dict[str, Any]], direction: str) -> list[dict[str, Any]]:
    order = {"COMPLETED": 0, "DIVERGED": 1, "UNREADABLE": 2, "FAILED": 3}
    sign = -1.0 if direction == "maximize" else 1.0

    def key(row: dict[str, Any]) -> tuple:
        value, num = row["value"], row.get("job_num")
        return (order.get(row["status"], 4), 0.0 if value is None else sign * value, num is None, num or 0)

    return sorted(rows, key=key)


def varying_overrides(rows: list[dict[str, Any]]) -> list[str]:
    """Override keys whose value differs between jobs: the sweep's actual parameters."""
    values: dict[str, set[str]] = {}
    for row in rows:
        for key, value in (_split_override(o) for o in row.get("overrides", [])):
            values.setdefault(key, set()).add(value)
    per_job = [dict(_split_override(o) for o in row.get("overrides", [])) for row in rows]
    return [k for k in values if len(values[k]) > 1 or any(k not in job for job in per_job)]


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def render(rows: list[dict[str, Any]], direction: str) -> tuple[str, str]:
    """(csv text, markdown text) for rows already in summary order."""
    params = varying_overrides(rows)
    metric = next((r["optimized_metric"] for r in rows if r.get("optimized_metric")), None)
    metric_keys = sorted({k for r in rows for k in r["metrics"] if "/recall/" not in k and k != metric})
    head = ["rank", "job", "status", *params, metric or "optimized_metric"]

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    # text cells escaped and guarded against spreadsheet formulas (an override such as +trainer.x=1)
    writer.writerow([csv_cell(cell) for cell in [*head, *metric_keys, "error", "overrides", "output_dir"]])
    for rank, row in enumerate(rows, 1):
        job = dict(_split_override(o) for o in row.get("overrides", []))
        writer.writerow(
            csv_cell(cell)
            for cell in [
                rank,
                _fmt(row.get("job_num")),
                row["status"],
                *(job.get(p, "") for p in params),
                _fmt(row["value"]),
                *(_fmt(row["metrics"].get(k)) for k in metric_keys),
                row.get("error") or "",
                " ".join(row.get("overrides", [])),
                row.get("output_dir", ""),
            ]
        )

    shown = [k for k in KEY_METRICS if k != metric and any(k in r["metrics"] for r in rows)]
    md_head = [*head, *shown, "error"]
    lines = [
        f"# Sweep summary: {len(rows)} jobs, sorted by `{metric}` ({direction})",
        "",
        "| " + " | ".join(md_head) + " |",
        "|" + "|".join("---" for _ in md_head) + "|",
    ]
    for rank, row in enumerate(rows, 1):
        job = dict(_split_override(o) for o in row.get("overrides", []))
        error = (row.get("error") or "").replace("|", "\\|").replace("\n", " ")[:200]
        cells = [
            str(rank),
            _fmt(row.get("job_num")),
            row["status"],
            *(f"`{job.get(p, '')}`" for p in params),
            _fmt(row["value"]),
            *(_fmt(row["metrics"].get(k)) for k in shown),
            error,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return buffer.getvalue(), "\n".join(lines) + "\n"


def write_summary(sweep_dir: str | Path, direction: str) -> list[dict[str, Any]]:
    """Rebuild ``summary.csv`` and ``summary.md`` in the sweep dir; returns the sorted rows."""
    rows = sort_rows(collect_rows(sweep_dir), direction)
    if rows:
        csv_text, md_text = render(rows, direction)
        write_text_atomic(Path(sweep_dir) / "summary.csv", csv_text)
        write_text_atomic(Path(sweep_dir) / "summary.md", escape_surrogates(md_text))
    return rows


# ---- the Hydra callback --------------------------------------------------------------------
def _is_multirun(config: DictConfig) -> bool:
    return OmegaConf.select(config, "hydra.mode") == RunMode.MULTIRUN


class SweepSummary(Callback):
    """Record each multirun job's outcome and keep the sweep summary up to date (no-op for single runs)."""

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        from litvision.utils.distributed import global_rank

        if not _is_multirun(config) or global_rank() != 0:
            return  # single runs need no summary; under SLURM every rank runs the job: write once
        error = None
        value = None
        if job_return.status == JobStatus.COMPLETED:
            raw = job_return.return_value
            # JSON has no inf/NaN: a diverged job's "inf"/"-inf" is kept as text
            value = _finite(raw) if raw is None or _finite(raw) is not None else str(raw)
        else:
            # ``_return_value`` holds the exception (``return_value`` would re-raise it)
            exc = job_return._return_value
            error = f"{type(exc).__name__}: {exc}" if exc is not None else "unknown error"
        output_dir = Path(config.hydra.runtime.output_dir)
        record = {
            "job_num": int(config.hydra.job.num),
            "status": "COMPLETED" if job_return.status == JobStatus.COMPLETED else "FAILED",
            "overrides": list(job_return.overrides or []),
            "optimized_metric": config.get("optimized_metric"),
            "return_value": value,
            "error": error,
            "output_dir": str(output_dir),
        }
        write_text_atomic(output_dir / STATUS_FILE, json.dumps(record, indent=2) + "\n")
        if error:
            log.error("job %s FAILED (%s); the sweep goes on, see the summary", record["job_num"], error)
        write_summary(config.hydra.sweep.dir, metric_direction(record["optimized_metric"], config.hydra))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        rows = write_summary(sweep_dir, metric_direction(config.get("optimized_metric"), config.hydra))
        failed = sum(row["status"] == "FAILED" for row in rows)
        diverged = sum(row["status"] == "DIVERGED" for row in rows)
        log.info(
            "sweep summary: %d jobs (%d failed, %d diverged) -> %s",
            len(rows),
            failed,
            diverged,
            sweep_dir / "summary.md",
        )
