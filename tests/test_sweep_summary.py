"""Sweep summary: one unreadable file marks its own row and never costs the other rows."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from litvision.launch.sweep_summary import STATUS_FILE, metric_direction, write_summary


def _job(sweep_dir: Path, num: int, metrics_text: str | None, status_text: str | None = None) -> Path:
    job = sweep_dir / str(num)
    job.mkdir(parents=True)
    record = {
        "job_num": num,
        "status": "COMPLETED",
        "overrides": [f"optimizer.lr=0.{num + 1}"],
        "optimized_metric": "val/acc_best",
        "error": None,
        "output_dir": str(job),
    }
    (job / STATUS_FILE).write_text(status_text if status_text is not None else json.dumps(record))
    if metrics_text is not None:
        (job / "metrics.json").write_text(metrics_text)
    return job


def _csv_rows(sweep_dir: Path) -> list[dict[str, str]]:
    return list(csv.DictReader((sweep_dir / "summary.csv").read_text().splitlines()))


def test_half_written_metrics_json_marks_its_row_and_keeps_the_others(tmp_path: Path) -> None:
    _job(tmp_path, 0, json.dumps({"val/acc_best": 0.5, "test/acc_top1": 0.45}))
    half = _job(
        tmp_path, 1, '{"val/acc_best": 0.7, "test/acc_to'
    )  # a writer killed mid-file (pre-atomic runs, other tools)
    _job(tmp_path, 2, json.dumps({"val/acc_best": 0.6, "test/acc_top1": 0.55}))
    _job(tmp_path, 3, "")  # 0 bytes

    rows = write_summary(tmp_path, metric_direction("val/acc_best"))

    assert [(r["job_num"], r["status"]) for r in rows] == [
        (2, "COMPLETED"),
        (0, "COMPLETED"),
        (1, "UNREADABLE"),
        (3, "UNREADABLE"),
    ]
    table = _csv_rows(tmp_path)
    assert [(r["job"], r["status"]) for r in table] == [
        ("2", "COMPLETED"),
        ("0", "COMPLETED"),
        ("1", "UNREADABLE"),
        ("3", "UNREADABLE"),
    ]
    assert [r["val/acc_best"] for r in table[:2]] == ["0.6000", "0.5000"]
    broken = table[2]
    assert broken["val/acc_best"] == "" and broken["optimizer.lr"] == "0.2"  # its swept value is still shown
    assert str(half / "metrics.json") in broken["error"] and "JSONDecodeError" in broken["error"]
    assert "UNREADABLE" in (tmp_path / "summary.md").read_text()


def test_unreadable_job_status_is_a_row_too(tmp_path: Path) -> None:
    _job(tmp_path, 0, json.dumps({"val/acc_best": 0.5}))
    _job(tmp_path, 1, json.dumps({"val/acc_best": 0.9}), status_text='{"job_num": 1, "stat')
    _job(tmp_path, 2, json.dumps({"val/acc_best": 0.8}), status_text="[1, 2]")  # valid JSON, not a record

    rows = write_summary(tmp_path, metric_direction("val/acc_best"))

    assert [(r["job_num"], r["status"]) for r in rows] == [(0, "COMPLETED"), (1, "UNREADABLE"), (2, "UNREADABLE")]
    table = _csv_rows(tmp_path)
    assert len(table) == 3 and table[0]["val/acc_best"] == "0.5000"
    assert STATUS_FILE in table[1]["error"] and table[1]["output_dir"] == str(tmp_path / "1")
