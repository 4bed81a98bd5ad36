"""The robustness section (robustness.md): clean vs shifted vs corrupted, losing classes, groups, effective robustness."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from litvision.callbacks.group_metrics import GroupMetrics
from litvision.callbacks.robustness_report import RobustnessReport, effective_robustness, logit, wilson


def confmat(diag: list[int], off: int = 0) -> torch.Tensor:
    m = torch.diag(torch.tensor(diag))
    m[0, 1] += off
    return m


def test_report_compares_clean_shifted_corrupted_and_groups(tmp_path: Path) -> None:
    (tmp_path / "robustness.json").write_text(
        json.dumps(
            {
                "clean": {"acc": 0.9, "n": 100},
                "corruptions": {
                    "fog": {
                        "1": {"acc": 0.8, "ci_low": 0.7, "ci_high": 0.9, "n": 100},
                        "2": {"acc": 0.6, "ci_low": 0.5, "ci_high": 0.7, "n": 100},
                    }
                },
                "mean_corruption_acc": 0.7,
                "mCE": None,
                "relative_mCE": None,
            }
        )
    )
    for i, (clean, shifted) in enumerate([(0.8, 0.6), (0.9, 0.75)]):  # two reference runs
        (tmp_path / f"ref{i}").mkdir()
        (tmp_path / f"ref{i}" / "metrics.json").write_text(
            json.dumps({"test/acc_top1": clean, "cifar10_1/acc_top1": shifted})
        )
    groups = GroupMetrics()
    groups.results["test/"] = {
        "test/group/group/a/n": 10.0,
        "test/group/group/a/acc_top1": 0.5,
        "test/group/group/a/balanced_acc": 0.5,
        "test/group/group/b/n": 0.0,
        "test/group/group/b/acc_top1": float("nan"),
        "test/group/group/b/balanced_acc": float("nan"),
        "test/worst_group_acc": 0.5,
        "test/worst_group_acc_ci_low": 0.2,
        "test/worst_group_acc_ci_high": 0.8,
    }
    report = RobustnessReport(
        tmp_path / "robustness.md", reference_runs=[str(tmp_path / "ref0"), str(tmp_path / "ref1")]
    )
    module = SimpleNamespace(
        class_names=["cat", "dog", "car"],
        epoch_results={
            "test": {"confmat": confmat([30, 30, 30], off=10)},
            "cifar10_1": {"confmat": confmat([5, 25, 30], off=30)},
        },
    )
    report._report(SimpleNamespace(callbacks=[groups], loggers=[], global_step=0), module)
    text = (tmp_path / "robustness.md").read_text()
    assert "| clean (test) | 100 | 0.9000 |" in text and "| cifar10_1 | 90 | 0.6667 |" in text
    assert "-23.3 pt" in text  # 0.6667 - 0.9
    assert "Mean corruption top-1 0.7000" in text and "| fog | 0.7000 |" in text
    assert "cat 0.75 -> 0.14" in text  # the class that loses most comes first
    assert "| group/b | 0 | absent |" in text and "Worst group top-1 0.5000" in text
    for png in ("robustness_sets.png", "robustness_groups.png", "robustness_effective.png"):
        assert (tmp_path / png).stat().st_size > 1000

    # effective robustness: the shifted accuracy minus the logit-linear fit of the references at this clean accuracy
    slope = (logit(0.75) - logit(0.6)) / (logit(0.9) - logit(0.8))
    predicted = 1 / (1 + math.exp(-(logit(0.6) + slope * (logit(0.9) - logit(0.8)))))
    er = report.summary["sets"]["cifar10_1"]["effective_robustness"]
    assert er == pytest.approx(60 / 90 - predicted)
    assert effective_robustness(0.9, 0.7, [(0.8, 0.6)]) is None  # one reference: no line


def test_wilson_interval() -> None:
    low, high = wilson(50, 100)
    assert low == pytest.approx(0.4038, abs=1e-3) and high == pytest.approx(0.5962, abs=1e-3)
    assert wilson(0, 10)[0] == 0.0 and np.isnan(wilson(0, 0)[0])
